#!/bin/sh
# with-redis.sh CMD ARGS...: runs CMD with a redis-server of its own
# (issue #15): a free 127.0.0.1 port, a temporary folder, appendonly yes,
# no RDB snapshots. CMD finds it in ORFEAS_TEST_REDIS (HOST:PORT). The
# server is stopped by its PID and the folder removed, whatever CMD did.
set -u
dir=$(mktemp -d /tmp/od-redis-XXXXXX) || exit 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
  --save '' --daemonize no --logfile "$dir/redis.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "with-redis.sh: redis-server on port $port did not start:" >&2
    cat "$dir/redis.log" >&2
    exit 1
  fi
  sleep 0.05
done
ORFEAS_TEST_REDIS="127.0.0.1:$port" "$@"
