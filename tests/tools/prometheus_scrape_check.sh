#!/usr/bin/env bash
# A real Prometheus scrapes the metrics fixture, once as text 0.0.4 and once
# as OpenMetrics (chosen by Content-Type, as Prometheus does), and must ingest
# every sample with the exact values and label values the fixture set.
# usage: prometheus_scrape_check.sh PROMETHEUS METRICS_DUMP
set -euo pipefail
prom=$1 dump=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/testlib.sh"

"$dump" text >"$work/text.prom"
"$dump" openmetrics >"$work/om.txt"
/usr/bin/python3 "$here/serve_file.py" "$work/p_text" "$work/text.prom" \
  'text/plain; version=0.0.4; charset=utf-8' & pids+=($!)
/usr/bin/python3 "$here/serve_file.py" "$work/p_om" "$work/om.txt" \
  'application/openmetrics-text; version=1.0.0; charset=utf-8' & pids+=($!)
wait_for '[[ -s $work/p_text && -s $work/p_om ]]' 10
pt=$(cat "$work/p_text") po=$(cat "$work/p_om")
pp=$(free_port)

cat >"$work/prometheus.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: text
    static_configs: [{targets: ['127.0.0.1:$pt']}]
  - job_name: openmetrics
    static_configs: [{targets: ['127.0.0.1:$po']}]
YML
"$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$pp" --log.level=warn >"$work/prom.log" 2>&1 &
pids+=($!)

api="http://127.0.0.1:$pp/api/v1/query"
q() { curl -fsS --get "$api" --data-urlencode "query=$1"; }
# One scrape of each target has happened when both report up.
wait_for '[[ $(q "count(up == 1)" 2>/dev/null | grep -o "\"[0-9]*\"]" ) == "\"2\"]" ]]' 30 || {
  cat "$work/prom.log"; q 'up' || true; exit 1; }

fail=0
check() { # query, expected value
  local got
  got=$(q "$1" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(",".join(sorted(x["value"][1] for x in r)))')
  if [[ $got == "$2" ]]; then echo "ok: $1 = $2"; else echo "FAIL: $1 = '$got', want '$2'"; fail=1; fi
}
want_samples=$(grep -vc '^#' "$work/text.prom")
check 'scrape_samples_scraped{job="text"}' "$want_samples"
check 'scrape_samples_scraped{job="openmetrics"}' "$want_samples"
# Prometheus 2.x stores le as written: "1" from text, "1.0" from OpenMetrics.
declare -A le=([text]=1 [openmetrics]=1.0)
for job in text openmetrics; do
  check "app_requests_total{job=\"$job\",path=\"we\\\"ird\\\\path\\nx\"}" 2
  check "app_bytes_total{job=\"$job\"}" 1.75
  check "app_special{job=\"$job\",kind=\"third\"}" 0.30000000000000004
  check "app_special{job=\"$job\",kind=\"ninf\"}" -Inf
  check "app_latency_seconds_bucket{job=\"$job\",le=\"${le[$job]}\"}" 3
  check "app_latency_seconds_count{job=\"$job\"}" 5
  check "app_collected{job=\"$job\",gpu=\"1\\\"x\"}" 2
  check "metrics_series_overflow_total{job=\"$job\"}" 2
done
exit $fail
