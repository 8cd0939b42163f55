#!/usr/bin/env bash
# The plan's "load test with monitoring", and the daily report, against real
# components: orfeasd (with the fake NVML) scraped by a real Prometheus, all
# on free loopback ports, stopped by PID.
#  1. orfeas-load drives jobs; no accepted job is lost.
#  2. Prometheus sees the request rate, the generation histogram, the queue
#     depth and the cache hits move as the load says they should.
#  3. orfeas-report's figures equal what Prometheus returns for the same
#     queries, and match the load (N generation requests).
#  4. The HTML renders in headless Chromium, and every chart has points.
# usage: load_report_check.sh ORFEASD ORFEAS_LOAD ORFEAS_REPORT FAKE_NVML PROMETHEUS
set -euo pipefail
orfeasd=$1 load=$2 report=$3 fake_nvml=$4 prom=$5
. "$(cd "$(dirname "$0")" && pwd)/testlib.sh"
py=/usr/bin/python3
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# Big enough images (2048 px, quality 10) that each job takes a while: with
# one worker the queue stays non-empty for seconds, which 4 scrapes a second
# cannot miss.
mkdir -p "$work/images"
$py - "$work/images" <<'PY'
import math, struct, sys, zlib
out, n = sys.argv[1], 2048
for k in range(6):
    r0 = n * (0.25 + 0.03 * k)
    rows = []
    for y in range(n):
        dy = y - n / 2
        half = int(math.sqrt(r0 * r0 - dy * dy)) if abs(dy) < r0 else 0
        a, b = n // 2 - half, n // 2 + half
        px_in = bytes([(40 * k) & 255, y & 255, 128, 255])
        px_out = bytes([0, 0, 0, 0])
        rows.append(b"\0" + px_out * a + px_in * (b - a) + px_out * (n - b))
    raw = zlib.compress(b"".join(rows), 6)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 6, 0, 0, 0)) \
        + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    open(f"{out}/disk{k}.png", "wb").write(png)
PY

printf 'gpus=2\ngpu0.util=55\ngpu0.temp=61\ngpu0.mem_used_mb=2048\ngpu1.util=70\ngpu1.temp=66\n' >"$work/gpu.state"
export FAKE_NVML_STATE=$work/gpu.state
po=$(free_port)
gpu_flags=()
"$orfeasd" --help 2>&1 | grep -q -- '--nvml-lib' && gpu_flags=(--nvml-lib "$fake_nvml" --gpu-interval 0.5)
"$orfeasd" --listen "127.0.0.1:$po" --data-dir "$work/data" --workers 1 \
  --queue-size 64 "${gpu_flags[@]}" >"$work/orfeasd.log" 2>&1 &
pids+=($!)
wait_for "curl -fs http://127.0.0.1:$po/health >/dev/null" 20

pp=$(free_port)
# Every window below starts before Prometheus' first scrape, so it holds each
# series' pre-created 0 sample (docs/api.md): increase() then never reads
# under the true count, however slow this machine is.
t0=$(date +%s)
cat >"$work/prometheus.yml" <<YML
global: {scrape_interval: 250ms, scrape_timeout: 250ms}
scrape_configs:
  - job_name: orfeas-backend
    static_configs: [{targets: ['127.0.0.1:$po']}]
YML
"$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$pp" --log.level=warn >"$work/prom.log" 2>&1 &
pids+=($!)
P=http://127.0.0.1:$pp
q() { # instant query -> first value, or "none"
  curl -fsS --get "$P/api/v1/query" --data-urlencode "query=$1" ${2:+--data-urlencode "time=$2"} |
    $py -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
# Prometheus starts scraping a few seconds after start-up.
wait_for '[[ $(q "up{job=\"orfeas-backend\"}" 2>/dev/null) == 1 ]]' 40

# 1. The load: 12 jobs over 6 distinct images: the repeats are cache hits.
jobs=12
"$load" --target "http://127.0.0.1:$po" --images "$work/images" --jobs $jobs \
  --distinct 6 --concurrency 4 --formats stl,glb --ws-clients 2 --quality 10 \
  --duration 120 >"$work/load.txt" 2>"$work/load.err" || { cat "$work/load.txt" "$work/load.err"; bad "orfeas-load exited non-zero"; }
cat "$work/load.txt"
grep -q "accepted $jobs, completed $jobs, failed 0" "$work/load.txt" && ok "load: $jobs accepted and completed" || bad "load summary"
grep -q ", lost 0$" "$work/load.txt" && ok "load: no job lost" || bad "a job was lost"
hits=$(sed -n 's/^  cache hits \([0-9]*\)$/\1/p' "$work/load.txt")
((hits >= 1)) && ok "load: $hits cache hits" || bad "no cache hits reported"

# 2. Prometheus saw it.
wait_for "[[ \$(q 'sum(orfeas_generation_3d_total)') == $jobs ]]" 20 && ok "prometheus: orfeas_generation_3d_total = $jobs" || bad "generation counter"
win() { echo "$(($(date +%s) - t0 + 5))s"; }
v=$(q "sum(increase(orfeas_http_requests_total{endpoint=\"/api/upload-image\"}[$(win)]))")
$py -c "import sys; sys.exit(0 if float('$v') >= $jobs * 0.9 else 1)" && ok "prometheus: upload request rate moved ($v)" || bad "upload requests: $v"
v=$(q 'sum(orfeas_generation_3d_duration_seconds_count)')
$py -c "import sys; sys.exit(0 if float('$v') >= 1 else 1)" && ok "prometheus: generation histogram count $v" || bad "generation histogram: $v"
v=$(q "max_over_time(orfeas_queue_depth[$(win)])")
$py -c "import sys; sys.exit(0 if float('$v') >= 1 else 1)" && ok "prometheus: queue depth peaked at $v" || bad "queue depth never above 0"
v=$(q 'sum(orfeas_cache_hits_total)')
$py -c "import sys; sys.exit(0 if float('$v') >= $hits else 1)" && ok "prometheus: cache hits $v >= $hits" || bad "cache hits: $v"

# 3. The report: same figures as Prometheus for the same queries. First let
# Prometheus collect 15 s of samples (60 scrapes) so the charts have lines.
wait_for "[[ \$(q 'count_over_time(up{job=\"orfeas-backend\"}[1m])') -ge 60 ]]" 30
# The period ends after the scrape that showed all $jobs generations (the
# counter read $jobs above, so that scrape's timestamp is before now, and
# end = now + 1 s is past it whatever the rounding). Wait until Prometheus
# holds a scrape later than end: scrapes of one target are stored in order,
# so every sample up to end is then in, and the report's queries and ours
# below see the same data. (An end in the past, as this test once had, could
# cut the period before the last jobs' samples: CI read 8.2 of 12.)
end=$(($(date +%s) + 1))
later() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "none" && a + 0 > b + 0) }'; }
wait_for "later \$(q 'timestamp(up{job=\"orfeas-backend\"})') $end" 20
range=$((end - t0 + 5))
"$report" --prometheus "$P" --range "${range}s" --end "$end" --out "$work/report" || bad "orfeas-report exited non-zero"
check_fig() { # key, promql
  local want got
  want=$(q "$2" "$end")
  got=$($py -c "import json; f=json.load(open('$work/report/report.json'))['figures']['$1']; print(f['value'] if f['value'] is not None else 'none')")
  if $py -c "import sys; a,b='$want','$got'; sys.exit(0 if (a==b=='none') or (a!='none' and b!='none' and abs(float(a)-float(b))<=1e-9*max(1,abs(float(a)))) else 1)"; then
    ok "report $1 = $got (Prometheus: $want)"
  else
    bad "report $1 = $got, Prometheus says $want"
  fi
}
check_fig generations "sum(increase(orfeas_generation_3d_total[${range}s]))"
check_fig cache_hit_rate "100 * sum(increase(orfeas_cache_hits_total[${range}s])) / (sum(increase(orfeas_cache_hits_total[${range}s])) + sum(increase(orfeas_cache_misses_total[${range}s])))"
check_fig generation_p95 "histogram_quantile(0.95, sum by (le) (increase(orfeas_generation_3d_duration_seconds_bucket[${range}s])))"
check_fig printable_share "100 * sum(increase(orfeas_generation_3d_printable_total[${range}s])) / sum(increase(orfeas_generation_3d_quality_score_count[${range}s]))"
check_fig queue_depth_peak "max(max_over_time(orfeas_queue_depth[${range}s]))"
check_fig gpu_util_max "max(max_over_time(orfeas_gpu_utilization_percent[${range}s]))"
gen=$($py -c "import json; print(json.load(open('$work/report/report.json'))['figures']['generations']['value'])")
# Every generation series starts at 0 inside the period, so increase() cannot
# read under the exact count; it reads over it only by extrapolating from the
# last scrape to the period's end (under 1.1 scrape intervals, beside the
# 15 s or more of samples): within 10% above.
if $py -c "import sys; sys.exit(0 if $jobs <= float('$gen') <= $jobs * 1.1 else 1)"; then
  ok "report: $gen generation requests (the load made $jobs)"
else
  bad "report generations $gen vs $jobs"
  # What Prometheus holds, sample by sample, so the cause can be read off.
  curl -fsS --get "$P/api/v1/query" --data-urlencode "query=orfeas_generation_3d_total[${range}s]" \
    --data-urlencode "time=$end" | $py -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    v = r["values"]
    print("  ", r["metric"].get("format"), r["metric"].get("status"), len(v), "samples:",
          " ".join(f"{float(t):.2f}={x}" for t, x in v if x != v[0][1] or t == v[0][0]))'
  curl -fsS --get "$P/api/v1/query" --data-urlencode "query=up[${range}s]" --data-urlencode "time=$end" |
    $py -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"][0]["values"]; print("   up:", len(r), "samples", r[0][0], "..", r[-1][0], "zeros:", sum(1 for _,x in r if x=="0"))'
  echo "   end=$end"; tail -5 "$work/prom.log"
fi
grep -q '| Generation requests (all outcomes) |' "$work/report/report.md" && ok "report.md written" || bad "report.md"

# 4. Headless Chromium renders the page; every chart has a line with points.
chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$work/report/report.html" \
  >"$work/dom.html" 2>"$work/chromium.log" || bad "chromium could not render the report"
$py - "$work/dom.html" <<'PY' && ok "every chart drawn with data points" || bad "a chart has no points"
import re, sys
dom = open(sys.argv[1]).read()
charts = re.findall(r'<svg class="chart".*?</svg>', dom, re.S)
no_data = dom.count("No data in this period.") + dom.count('class="missing"')
print(f"  {len(charts)} charts drawn, {no_data} sections without data")
ok = len(charts) >= 3
for c in charts:
    pts = [p for m in re.findall(r'points="([^"]*)"', c) for p in m.split()]
    if len(pts) < 2:
        ok = False
sys.exit(0 if ok else 1)
PY
chromium --headless --no-sandbox --disable-gpu --window-size=1000,2400 \
  --screenshot="$work/report.png" "file://$work/report/report.html" >/dev/null 2>&1 || true
[[ -s $work/report.png ]] && ok "screenshot taken" || bad "no screenshot"
[[ -n ${KEEP_REPORT:-} ]] && cp -r "$work/report" "$work/report.png" "$KEEP_REPORT/"
exit $fail
