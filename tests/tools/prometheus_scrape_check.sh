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
ports_written() { [[ -s $work/p_text && -s $work/p_om ]]; }
wait_for "the two file servers' ports" ports_written 10
pt=$(cat "$work/p_text") po=$(cat "$work/p_om")
read -r pp <<<"$(free_ports 1)"

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
testlib_logs+=("$work/prom.log")
PROM=http://127.0.0.1:$pp

# One scrape of each target has happened when both report up.
both_up() { [[ $(promql 'count(up == 1)' 2>/dev/null) == $'{}\t2' ]]; }
wait_for "both targets up" both_up 30

has() { # query, expected values (sorted, comma-separated)
  local got
  got=$(promql "$1" | cut -f2 | sort | paste -sd, -)
  [[ $got == "$2" ]] || { echo "  $1 = '$got', want '$2'"; return 1; }
}
want_samples=$(grep -vc '^#' "$work/text.prom")
for job in text openmetrics; do
  check "$job: every sample ingested ($want_samples)" has "scrape_samples_scraped{job=\"$job\"}" "$want_samples"
  # As many series as sample lines: no line repeats another's series (the
  # fixture's collector reports one label set twice; only the first shows).
  check "$job: every sample its own series" has "count({job=\"$job\",__name__!~\"up|scrape_.*\"})" "$want_samples"
done
# Prometheus 2.x stores le as written: "1" from text, "1.0" from OpenMetrics.
declare -A le=([text]=1 [openmetrics]=1.0)
for job in text openmetrics; do
  check "$job: escaped label values" has "app_requests_total{job=\"$job\",path=\"we\\\"ird\\\\path\\nx\"}" 2
  check "$job: a float counter" has "app_bytes_total{job=\"$job\"}" 1.75
  check "$job: a float gauge" has "app_special{job=\"$job\",kind=\"third\"}" 0.30000000000000004
  check "$job: -Inf" has "app_special{job=\"$job\",kind=\"ninf\"}" -Inf
  check "$job: a bucket (le=${le[$job]})" has "app_latency_seconds_bucket{job=\"$job\",le=\"${le[$job]}\"}" 3
  check "$job: a histogram count" has "app_latency_seconds_count{job=\"$job\"}" 5
  check "$job: a collected gauge" has "app_collected{job=\"$job\",gpu=\"1\\\"x\"}" 2
  check "$job: a collector's first report wins" has "app_collected{job=\"$job\",gpu=\"0\"}" 1.5
  check "$job: the duplicates counter" has "metrics_collector_duplicates_total{job=\"$job\"}" 1
  check "$job: the overflow counter" has "metrics_series_overflow_total{job=\"$job\"}" 2
done
finish
