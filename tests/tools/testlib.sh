# testlib.sh: what every shell test shares (tests/tools/*.sh,
# tests/monitoring/live-run, tests/monitoring/stack-native). Source it after
# `set -euo pipefail`. It gives:
#
#   $work              a temp dir, removed at exit
#   pids               an array: add every background PID; at exit each is
#                      killed (SIGCONT first, in case a drill stopped it) and reaped
#   test_cleanup       define it to run more clean-up at exit, before the kills
#   testlib_logs       an array of log files whose tails `fail` prints
#   ok MSG, fail MSG   "ok: MSG"; "FAIL: MSG", the log tails, exit 1
#   check DESC CMD...  runs CMD ARGS...: ok DESC, or "FAIL: DESC" and
#                      failures+=1 (the test goes on; end with `finish`)
#   finish             exit 1 if a check failed, else 0
#   free_ports N       N distinct free loopback ports, space-separated
#   wait_for DESC COND SECONDS
#                      runs COND (a command and its arguments, split on
#                      blanks: write a function for anything longer; no
#                      eval) every 0.2 s until it succeeds; fail after SECONDS
#   promql QUERY [TIME]
#                      instant query against $PROM (Prometheus' base URL):
#                      one line per series, "LABELS<TAB>VALUE", LABELS as
#                      k=v,k=v (sorted; "{}" for none; backslash, newline
#                      and tab in values escaped as \\ \n \t); lines sorted. Exit 1
#                      when Prometheus does not answer or rejects the query.
#   num_cmp A OP B     true when the numbers compare (OP: < <= == >= >);
#                      false for an empty or non-numeric A or B
#   running PID        true while PID exists and has not exited: a zombie
#                      (exited, not yet reaped) is not running. The stack's
#                      processes are orphans that PID 1 reaps, on some
#                      machines only every second or two (scripts/stack)
work=$(mktemp -d)
pids=()
testlib_logs=()
failures=0

testlib_cleanup() {
  local p
  if declare -F test_cleanup >/dev/null; then test_cleanup || true; fi
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap testlib_cleanup EXIT

ok() { echo "ok: $*"; }

running() {
  local s
  { IFS= read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}

fail() {
  local f
  echo "FAIL: $*"
  for f in "${testlib_logs[@]}"; do
    [[ -f $f ]] && { echo "--- tail of $f"; tail -n 15 "$f"; }
  done
  exit 1
}

check() {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else echo "FAIL: $desc"; failures=$((failures + 1)); fi
}

finish() { ((failures == 0)) || { echo "FAIL: $failures check(s) failed"; exit 1; }; }

free_ports() {
  # odlib.free_ports: outside the kernel's ephemeral range (it says why).
  /usr/bin/python3 - "$1" "$(dirname "${BASH_SOURCE[0]}")/../service" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
from odlib import free_ports
print(" ".join(str(p) for p in free_ports(int(sys.argv[1]))))
PY
}

wait_for() {
  local desc=$1 secs=$3 deadline=$((SECONDS + $3))
  local -a cond
  read -ra cond <<<"$2"
  until "${cond[@]}"; do
    ((SECONDS < deadline)) || fail "timed out after $secs s waiting for $desc"
    sleep 0.2
  done
}

promql() {
  local args=(--data-urlencode "query=$1")
  [[ -n ${2:-} ]] && args+=(--data-urlencode "time=$2")
  curl -fsS --max-time 10 --get "$PROM/api/v1/query" "${args[@]}" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
if d.get("status") != "success":
    sys.exit("promql: " + d.get("error", "failed"))
r = d["data"]["result"]
if d["data"]["resultType"] in ("scalar", "string"):
    r = [{"metric": {}, "value": r}]
def esc(v):  # one line per series, whatever the label values hold
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
out = []
for x in r:
    labels = ",".join(f"{k}={esc(v)}" for k, v in sorted(x["metric"].items())) or "{}"
    out.append(labels + "\t" + x["value"][1])
print("\n".join(sorted(out)))' | sed '/^$/d'
}

num_cmp() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import operator, sys
ops = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">=": operator.ge, ">": operator.gt}
try:
    a, b = float(sys.argv[1]), float(sys.argv[3])
except ValueError:
    sys.exit(1)
sys.exit(0 if ops[sys.argv[2]](a, b) else 1)
PY
}
