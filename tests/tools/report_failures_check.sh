#!/usr/bin/env bash
# orfeas-report when things go wrong, as an operator meets them: bad flag
# values, a Prometheus that answers 500 or slowly (tests/tools/fake_http.py),
# a full disk under --out, an --out that cannot be made or takes no file,
# reports run at once into one folder, a sendmail that fails or hangs. Each case checks the exit status, that the
# message names what to fix, and that no half-written file (or empty
# folder) is left behind. No real Prometheus: nothing here needs data, only
# answers.
# usage: report_failures_check.sh ORFEAS_REPORT
set -euo pipefail
report=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/testlib.sh"
py=/usr/bin/python3

fake() { # NAME MODE [ARG]: a fake_http.py server; its port in $work/NAME
  $py "$here/fake_http.py" "$work/$1" "${@:2}" &
  pids+=($!)
  wait_for "fake $2 server" "test -s $work/$1" 10
}
fake slow promslow 0.4
fake fast promslow 0
fake e500 prom500
slow=http://127.0.0.1:$(cat "$work/slow")
fast=http://127.0.0.1:$(cat "$work/fast")
e500=http://127.0.0.1:$(cat "$work/e500")

run() { # EXPECTED_RC NAME ARGS...: runs the report, output in $work/NAME.err
  local want=$1 name=$2 rc=0
  shift 2
  "$report" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
  if [[ $rc != "$want" ]]; then
    echo "  exit $rc, stderr:"; sed 's/^/    /' "$work/$name.err" | head -5
    return 1
  fi
}
says() { grep -q -- "$2" "$work/$1.err" || { echo "  stderr of $1:"; head -3 "$work/$1.err"; return 1; }; }

# Bad values are usage errors (1) naming the flag, never a crash: a range or
# an end outside what a calendar date can show made it segfault.
for v in nan inf 1e30 0.5 400d; do
  check "--range $v: exit 1" run 1 "range_$v" --prometheus "$fast" --range "$v" --out "$work/r"
  check "--range $v: the message names --range" says "range_$v" "bad --range"
done
for v in nan 1e30 -5; do
  check "--end $v: exit 1" run 1 "end_$v" --prometheus "$fast" --end "$v" --out "$work/r"
  check "--end $v: the message names --end" says "end_$v" "bad --end"
done
check "an unknown option: exit 1" run 1 unknown --bogus 1
check "an unknown option is called so" says unknown "unknown option --bogus"

# Not running: exit 2, the URL and what to do, and no folder: a cron line
# with --out reports/$(date +%F) left an empty dated folder (and its
# parents) for every failed run.
check "no Prometheus: exit 2" run 2 down --prometheus http://127.0.0.1:1 --out "$work/down/2026-12-03"
check "no Prometheus: names the URL and --prometheus" says down "http://127.0.0.1:1.*--prometheus"
check "no Prometheus: no folder created, nor its parent" test ! -e "$work/down"

# A Prometheus answering 500 with a plain-text body: the queries fail with
# the status and the body, the rest of the report is written, exit 3.
check "HTTP 500: exit 3" run 3 e500 --prometheus "$e500" --range 1h --out "$work/e500r"
check "HTTP 500: the message says HTTP 500 and the body" says e500 "HTTP 500.*upstream broke"
check "HTTP 500: the report is written" test -s "$work/e500r/report.json"

# A slow Prometheus (0.4 s a query, some 50 queries): --timeout bounds the
# whole run; the queries not asked in time are missing, exit 3.
# (Not timed here: no timing is asserted on a client's clock. The exit 3
# and the message say the deadline cut the run: at 0.4 s a query the ~50
# queries take 20 s, and only --timeout ends them sooner.)
check "slow Prometheus, --timeout 2: exit 3" run 3 slow --prometheus "$slow" --range 1h --timeout 2 --out "$work/slowr"
check "slow Prometheus: the message names --timeout" says slow "timeout"
check "--timeout 0: exit 1" run 1 timeout0 --timeout 0

# A full disk (a file size limit of 1 KiB: the HTML is larger) under an
# --out that holds yesterday's report: exit 1 naming the file, yesterday's
# files intact, no temporary file left behind.
mkdir -p "$work/full"
for f in report.html report.md report.json; do echo "old $f" >"$work/full/$f"; done
rc=0
(trap '' XFSZ; ulimit -f 1; exec "$report" --prometheus "$fast" --range 1h --out "$work/full") \
  >"$work/full.out" 2>"$work/full.err" || rc=$?
check "full disk: exit 1 (got $rc)" test "$rc" = 1
check "full disk: the message names the file" says full "report.html"
check "full disk: the old report.html is intact" grep -qx "old report.html" "$work/full/report.html"
check "full disk: the old report.md is intact" grep -qx "old report.md" "$work/full/report.md"
check "full disk: no temporary file left" test -z "$(ls -A "$work/full" | grep -v '^report\.\(html\|md\|json\)$')"
# An --out that cannot be created, one that exists but takes no file (/proc:
# not even root may make one there), one that is a file: exit 1 naming it,
# found before the queries (the fake logs every request: none is asked).
queries() { grep -c '/api/v1/query' "$work/fast.log" || true; }
no_query() { [[ $(queries) == "$1" ]] || { echo "  $(($(queries) - $1)) queries asked"; return 1; }; }
n=$(queries)
check "unwritable --out: exit 1" run 1 noout --prometheus "$fast" --out /proc/orfeas-report
check "unwritable --out: names the folder" says noout "/proc/orfeas-report"
check "unwritable --out: found before the queries" no_query "$n"
touch "$work/afile"
for out in /proc "$work/afile"; do
  n=$(queries)
  check "--out $out: exit 1" run 1 takesnone --prometheus "$fast" --range 1h --out "$out"
  check "--out $out: names it" says takesnone "cannot write into $out:"
  check "--out $out: found before the queries" no_query "$n"
done

# Reports run at once into one folder (a cron job and an operator): each
# exits 0, and each of the three files is whole. They shared fixed temporary
# names: one's probe truncated and removed the file another was writing, or
# renamed it away ("cannot rename DIR/.report.html.tmp ...: No such file").
# The fake answers each query once all 4 have asked it, so they reach their
# probes together and write their files at the same moment; 3 rounds.
fake step promlockstep 4
step=http://127.0.0.1:$(cat "$work/step")
whole() { # DIR: report.json parses, report.html and report.md end as written
  $py -c 'import json, sys; json.load(open(sys.argv[1] + "/report.json"))' "$1" &&
    [[ $(tail -n 1 "$1/report.html") == "</body></html>" ]] &&
    [[ $(tail -n 1 "$1/report.md") == "Charts are in report.html." ]]
}
for round in 1 2 3; do
  at_once=()
  for k in 1 2 3 4; do
    "$report" --prometheus "$step" --range 1h --out "$work/shared" >"$work/once$k.out" 2>"$work/once$k.err" &
    at_once+=($!)
    pids+=($!)
  done
  for k in 1 2 3 4; do
    rc=0
    wait "${at_once[k - 1]}" || rc=$?
    check "round $round, report $k of 4 at once: exit 0 (got $rc: $(head -c 200 "$work/once$k.err"))" test "$rc" = 0
  done
  check "round $round: the three files are whole" whole "$work/shared"
  check "round $round: no temporary file left" test -z "$(ls -A "$work/shared" | grep -v '^report\.\(html\|md\|json\)$')"
done

# A sendmail that fails: written, exit 4, the message names the program.
printf '#!/bin/sh\ncat >/dev/null\necho "sendmail: relay refused" >&2\nexit 1\n' >"$work/sendmail"
chmod +x "$work/sendmail"
check "failing sendmail: exit 4" run 4 mail --prometheus "$fast" --range 1h --out "$work/mailr" \
  --mail-to ops@example.org --sendmail "$work/sendmail"
check "failing sendmail: names it and its status" says mail "$work/sendmail failed (exit status 1)"
check "failing sendmail: the report is written" test -s "$work/mailr/report.html"
# A sendmail that never ends (takes the message, then hangs, as one waiting
# on an unreachable smarthost without a timeout of its own): killed past
# --mail-timeout, exit 4 naming the flag, the report written.
printf '#!/bin/sh\necho $$ >"%s"\ncat >/dev/null\nexec sleep 600\n' "$work/hang.pid" >"$work/hang"
chmod +x "$work/hang"
check "hanging sendmail, --mail-timeout 1: exit 4" run 4 hang --prometheus "$fast" --range 1h \
  --out "$work/hangr" --mail-to ops@example.org --sendmail "$work/hang" --mail-timeout 1
check "hanging sendmail: the message names --mail-timeout" says hang "$work/hang did not finish within 1 s (--mail-timeout)"
check "hanging sendmail: the report is written" test -s "$work/hangr/report.html"
check "hanging sendmail: killed, not left running" bash -c "! kill -0 \$(cat '$work/hang.pid') 2>/dev/null"
check "--mail-timeout 0: exit 1" run 1 mailtimeout0 --mail-timeout 0
finish
