# testlib.sh: what the shell tests under tests/tools share. Source it after
# `set -euo pipefail`. Gives: $work (a temp dir removed at exit), pids (add
# every background PID: they are killed and reaped at exit), free_port,
# wait_for CONDITION SECONDS (polls every 0.2 s; fails with what it waited for).
work=$(mktemp -d)
pids=()
testlib_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap testlib_cleanup EXIT
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    ((SECONDS < deadline)) || { echo "FAIL: timed out waiting for: $1"; return 1; }
    sleep 0.2
  done
}
