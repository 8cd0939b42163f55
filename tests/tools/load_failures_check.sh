#!/usr/bin/env bash
# orfeas-load when things go wrong, as an operator meets them: bad or absurd
# flag values, no orfeasd at the target, a run stopped with Ctrl-C (SIGINT;
# SIGTERM with --json) while jobs are in flight, a target that refuses every
# job (429 to each generate, 503 to each upload), all against
# tests/tools/fake_http.py. Each case checks the exit status and that the
# message names the flag, the URL or the refusal; the interrupted run must
# still print its summary, and its JSON say it was interrupted.
# usage: load_failures_check.sh ORFEAS_LOAD
set -euo pipefail
load=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/testlib.sh"
py=/usr/bin/python3
# The runs against the fakes send one small PNG: --synthetic draws 30
# (0.6 s or more before the first request), and the fakes read no image.
mkdir "$work/img"
cp "$here/../fuzz/seeds/image_loading/star_rgba.png" "$work/img/"
img=(--images "$work/img")

run() { # EXPECTED_RC NAME ARGS...: output in $work/NAME.out and .err
  local want=$1 name=$2 rc=0
  shift 2
  timeout 20 "$load" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  if [[ $rc != "$want" ]]; then
    echo "  exit $rc, stderr:"; sed 's/^/    /' "$work/$name.err" | head -5
    return 1
  fi
}
says() { grep -q -- "$2" "$work/$1.err" || { echo "  stderr of $1:"; head -3 "$work/$1.err"; return 1; }; }

# Every bad value is usage (2) before any request, and the message names the
# flag: these were accepted (--quality 11, --formats xyz: every job a submit
# error and exit 0; --duration inf: no deadline), or refused as "a value is
# out of range" without saying which.
while read -r flag value; do
  n=bad_${flag#--}_$value
  check "$flag $value: exit 2" run 2 "$n" --target http://127.0.0.1:1 "$flag" "$value"
  check "$flag $value: the message names $flag" says "$n" "orfeas-load: $flag"
done <<'EOF2'
--concurrency 100000
--concurrency 4x
--jobs abc
--jobs 20000
--quality 11
--formats xyz
--formats stl,,obj,ply,glb,stl
--duration inf
--duration 0
--rate nan
--ws-clients 65
--distinct -1
EOF2

# --jobs 0 is usage too: a run with nothing to do would end as one that
# ran (docs/load.md).
check "--jobs 0: exit 2" run 2 jobs0 --target http://127.0.0.1:1 --jobs 0
check "--jobs 0: the message names --jobs" says jobs0 "orfeas-load: --jobs 0"

# No orfeasd: exit 2, the URL and why, not "HTTP 0".
check "no orfeasd: exit 2" run 2 down --target http://127.0.0.1:1 --jobs 1 "${img[@]}"
check "no orfeasd: names the URL and the connection error" says down "http://127.0.0.1:1.*[Cc]onnect"

# Ctrl-C in the middle of a run: jobs in flight (the fake never ends them),
# SIGINT: the run stops within seconds, prints its summary saying it was
# interrupted, exit 130.
$py "$here/fake_http.py" "$work/run" orfeasrun &
pids+=($!)
wait_for "fake orfeasd" "test -s $work/run" 10
"$load" --target "http://127.0.0.1:$(cat "$work/run")" --jobs 50 --concurrency 2 --ws-clients 0 "${img[@]}" \
  --duration 60 >"$work/int.out" 2>"$work/int.err" &
lp=$!
pids+=($lp)
generates() { grep -c 'POST /api/generate-3d' "$work/run.log" 2>/dev/null || true; }
at_least() { [[ $(generates) -ge $1 ]]; }
wait_for "two jobs submitted" "at_least 2" 10
kill -INT "$lp"
# Its --duration is 60 s and the fake never ends a job: only the SIGINT
# stops it inside the 10 s deadline (no timing asserted beyond that).
stopped() { ! running "$lp"; }
wait_for "orfeas-load to stop after SIGINT" stopped 10
rc=0
wait "$lp" || rc=$?
check "SIGINT: exit 130 (got $rc)" test "$rc" = 130
check "SIGINT: the summary is printed" grep -q "planned jobs ran against" "$work/int.out"
check "SIGINT: the summary says it was interrupted" grep -q "interrupted" "$work/int.out"
check "SIGINT: the jobs in flight are counted" grep -q "accepted 2," "$work/int.out"

# The same with SIGTERM and --json: exit 143, and the JSON says the run was
# interrupted and by which signal (the text's first line says so; the JSON
# had no field for it).
before=$(generates)
"$load" --target "http://127.0.0.1:$(cat "$work/run")" --jobs 50 --concurrency 2 --ws-clients 0 "${img[@]}" \
  --duration 60 --json >"$work/term.out" 2>"$work/term.err" &
lp=$!
pids+=($lp)
wait_for "two more jobs submitted" "at_least $((before + 2))" 10
kill -TERM "$lp"
wait_for "orfeas-load to stop after SIGTERM" stopped 10
rc=0
wait "$lp" || rc=$?
check "SIGTERM: exit 143 (got $rc)" test "$rc" = 143
json_is() { # FILE EXPR: EXPR, Python over the JSON summary j, is true
  $py -c 'import json, sys
j = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
if not ok:
    print("  not", sys.argv[2], "in", {k: j.get(k) for k in ("interrupted", "signal", "jobs")})
sys.exit(0 if ok else 1)' "$1" "$2"
}
check "SIGTERM --json: interrupted true, signal SIGTERM, 2 in flight" json_is "$work/term.out" \
  'j.get("interrupted") is True and j.get("signal") == "SIGTERM" and j["jobs"]["accepted"] == 2'

# A refusal with Retry-After (the fake answers every generate-3d 429 with
# Retry-After: 1): the worker waits that long before its next job instead
# of hammering a full queue, and the summary says how often and how long.
$py "$here/fake_http.py" "$work/full" orfeas429 1 &
pids+=($!)
wait_for "fake full orfeasd" "test -s $work/full" 10
# No job accepted is exit 3, not 0 (a script read 0 as "the load ran"),
# with a line on stderr saying so and why, the first refusal's words.
check "429: exit 3 (no job was accepted)" run 3 r429 \
  --target "http://127.0.0.1:$(cat "$work/full")" --jobs 3 --concurrency 1 --ws-clients 0 "${img[@]}" --duration 10
check "429: all 3 counted rejected" grep -q "rejected (429) 3," "$work/r429.out"
check "429: stderr says nothing was accepted, the first refusal's status and reason" says r429 \
  "orfeas-load: nothing was accepted: all 3 jobs that started were refused; the first by generate-3d: HTTP 429: queue full, retry later"
spaced() { # the generate-3d requests at least 0.9 s apart
  grep 'POST /api/generate-3d' "$work/full.log" | $py -c '
import sys
t = [float(l.split()[0]) for l in sys.stdin]
gaps = [b - a for a, b in zip(t, t[1:])]
print("  generate-3d gaps:", " ".join("%.2f" % g for g in gaps))
sys.exit(0 if len(t) == 3 and min(gaps) >= 0.9 else 1)'
}
check "429: Retry-After obeyed between jobs" spaced
check "429: the summary reports the waits" grep -q "Retry-After: 3 refusals, waited 2" "$work/r429.out"

# A target that answers /health but refuses every upload (503, the store
# full): exit 3, the upload's status and reason on stderr.
$py "$here/fake_http.py" "$work/nostore" orfeasfull &
pids+=($!)
wait_for "fake orfeasd refusing uploads" "test -s $work/nostore" 10
check "uploads refused: exit 3" run 3 up503 \
  --target "http://127.0.0.1:$(cat "$work/nostore")" --jobs 2 --concurrency 1 --ws-clients 0 "${img[@]}" --json
check "uploads refused: stderr names the upload, HTTP 503 and the reason" says up503 \
  "orfeas-load: nothing was accepted: all 2 jobs that started were refused; the first by upload: HTTP 503: the whole --max-store-mb"
check "uploads refused --json: not interrupted, no signal" json_is "$work/up503.out" \
  'j.get("interrupted") is False and j.get("signal") is None and j["jobs"]["accepted"] == 0'
finish
