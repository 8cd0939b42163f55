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
#  5. A --duration shorter than orfeas-load's start-up still runs its first
#     job (exit 0), and only that one.
# usage: load_report_check.sh ORFEASD ORFEAS_LOAD ORFEAS_REPORT FAKE_NVML PROMETHEUS
set -euo pipefail
orfeasd=$1 load=$2 report=$3 fake_nvml=$4 prom=$5
. "$(cd "$(dirname "$0")" && pwd)/testlib.sh"
py=/usr/bin/python3

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
read -r po pp <<<"$(free_ports 2)"
gpu_flags=()
"$orfeasd" --help 2>&1 | grep -q -- '--nvml-lib' && gpu_flags=(--nvml-lib "$fake_nvml" --gpu-interval 0.5)
"$orfeasd" --listen "127.0.0.1:$po" --data-dir "$work/data" --workers 1 \
  --queue-size 64 "${gpu_flags[@]}" >"$work/orfeasd.log" 2>&1 &
pids+=($!)
testlib_logs+=("$work/orfeasd.log")
healthy() { curl -fs -o /dev/null "http://127.0.0.1:$po/health"; }
wait_for "orfeasd's /health" healthy 20

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
testlib_logs+=("$work/prom.log")
PROM=http://127.0.0.1:$pp
P=$PROM
q() { # instant query -> the first series' value, or "none"
  local v
  v=$(promql "$@" | head -n 1 | cut -f2)
  echo "${v:-none}"
}
# Prometheus starts scraping a few seconds after start-up.
scraped() { [[ $(q 'up{job="orfeas-backend"}' 2>/dev/null) == 1 ]]; }
wait_for "Prometheus' first scrape of orfeasd" scraped 40

# 1. The load: 12 jobs over 6 distinct images: the repeats are cache hits.
jobs=12
"$load" --target "http://127.0.0.1:$po" --images "$work/images" --jobs $jobs \
  --distinct 6 --concurrency 4 --formats stl,glb --ws-clients 2 --quality 10 \
  --duration 120 >"$work/load.txt" 2>"$work/load.err" || { cat "$work/load.txt" "$work/load.err"; fail "orfeas-load exited non-zero"; }
cat "$work/load.txt"
check "load: $jobs accepted and completed" grep -q "accepted $jobs, completed $jobs, failed 0" "$work/load.txt"
check "load: no job lost" grep -q ", lost 0$" "$work/load.txt"
hits=$(sed -n 's/^  cache hits \([0-9]*\)$/\1/p' "$work/load.txt")
check "load: ${hits:-no} cache hits" num_cmp "$hits" '>=' 1

# 2. Prometheus saw it.
all_counted() { [[ $(q 'sum(orfeas_generation_3d_total)') == "$jobs" ]]; }
wait_for "orfeas_generation_3d_total = $jobs in Prometheus" all_counted 20
ok "prometheus: orfeas_generation_3d_total = $jobs"
win() { echo "$(($(date +%s) - t0 + 5))s"; }
v=$(q "sum(increase(orfeas_http_requests_total{endpoint=\"/api/upload-image\"}[$(win)]))")
check "prometheus: upload request rate moved ($v)" num_cmp "$v" '>=' "$((jobs * 9 / 10))"
v=$(q 'sum(orfeas_generation_3d_duration_seconds_count)')
check "prometheus: generation histogram count $v" num_cmp "$v" '>=' 1
v=$(q "max_over_time(orfeas_queue_depth[$(win)])")
check "prometheus: queue depth peaked at $v" num_cmp "$v" '>=' 1
v=$(q 'sum(orfeas_cache_hits_total)')
check "prometheus: cache hits $v >= $hits" num_cmp "$v" '>=' "$hits"

# 3. The report: same figures as Prometheus for the same queries. First let
# Prometheus collect 10 s of samples (40 scrapes) so the charts have lines:
# the report's step is 1 s here (a period of about 25 s, over 120, at least
# 1 s), so each series is 10 points or more.
enough_scrapes() { num_cmp "$(q 'count_over_time(up{job="orfeas-backend"}[1m])')" '>=' 40; }
wait_for "40 scrapes in the last minute" enough_scrapes 30
# The period ends after the scrape that showed all $jobs generations (the
# counter read $jobs above, so that scrape's timestamp is before now, and
# end = now + 1 s is past it whatever the rounding). Wait until Prometheus
# holds a scrape later than end: scrapes of one target are stored in order,
# so every sample up to end is then in, and the report's queries and ours
# below see the same data. (An end in the past, as this test once had, could
# cut the period before the last jobs' samples: CI read 8.2 of 12.)
end=$(($(date +%s) + 1))
scraped_after_end() { num_cmp "$(q 'timestamp(up{job="orfeas-backend"})')" '>' "$end"; }
wait_for "a scrape after the period's end" scraped_after_end 20
range=$((end - t0 + 5))
check "orfeas-report exits 0" "$report" --prometheus "$P" --range "${range}s" --end "$end" --out "$work/report"
fig() { # the report's figure KEY, or "none"
  $py - "$work/report/report.json" "$1" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["figures"][sys.argv[2]]
print(f["value"] if f["value"] is not None else "none")
PY
}
same() { # two figures, equal to 1e-9 (relative), or both "none"
  [[ $1 == none && $2 == none ]] && return 0
  [[ $1 != none && $2 != none ]] || return 1
  $py -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-9 * max(1, abs(a)))' "$1" "$2"
}
check_fig() { # key, promql
  local want got
  want=$(q "$2" "$end")
  got=$(fig "$1")
  check "report $1 = $got (Prometheus: $want)" same "$got" "$want"
}
check_fig generations "sum(increase(orfeas_generation_3d_total[${range}s]))"
# The cache hit rate is per lookup, and every generate-3d of this load is one
# lookup: the share of generations answered from the cache (status cached),
# read from a family the rate's own query does not use. A lookup that misses
# the memory tier is counted again by the disk tier (as a hit or a miss), so
# hits / (hits + misses of both tiers) read 33% here where half were hits.
want=$(q "100 * sum(increase(orfeas_generation_3d_total{status=\"cached\"}[${range}s])) / sum(increase(orfeas_generation_3d_total{status!=\"rejected\"}[${range}s]))" "$end")
got=$(fig cache_hit_rate)
near() { [[ $1 != none && $2 != none ]] && $py -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 0.5)' "$1" "$2"; }
check "report cache_hit_rate = $got% (cached generations: $want%)" near "$got" "$want"
check_fig generation_p95 "histogram_quantile(0.95, sum by (le) (increase(orfeas_generation_3d_duration_seconds_bucket[${range}s])))"
check_fig printable_share "100 * sum(increase(orfeas_generation_3d_printable_total[${range}s])) / sum(increase(orfeas_generation_3d_quality_score_count[${range}s]))"
check_fig queue_depth_peak "max(max_over_time(orfeas_queue_depth[${range}s]))"
check_fig gpu_util_max "max(max_over_time(orfeas_gpu_utilization_percent[${range}s]))"
gen=$(fig generations)
# Every generation series starts at 0 inside the period, so increase() cannot
# read under the exact count; it reads over it only by extrapolating from the
# last scrape to the period's end (under 1.1 scrape intervals, beside the
# 10 s or more of samples): within 10% above.
within() { num_cmp "$1" '>=' "$jobs" && num_cmp "$1" '<=' "$((jobs * 11 / 10))"; }
if within "$gen"; then
  ok "report: $gen generation requests (the load made $jobs)"
else
  echo "FAIL: report generations $gen vs $jobs"; failures=$((failures + 1))
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
check "report.md written" grep -q '| Generation requests (all outcomes) |' "$work/report/report.md"

# 4. Headless Chromium renders the page; every chart has a line with points.
check "chromium renders the report" chromium --headless --no-sandbox --disable-gpu --dump-dom \
  "file://$work/report/report.html" >"$work/dom.html" 2>"$work/chromium.log"
charts_drawn() {
  $py - "$work/dom.html" <<'PY'
import re, sys
dom = open(sys.argv[1]).read()
charts = re.findall(r'<svg class="chart".*?</svg>', dom, re.S)
no_data = dom.count("No data in this period.") + dom.count('class="missing"')
print(f"  {len(charts)} charts drawn, {no_data} sections without data")
ok = len(charts) >= 3
for c in charts:
    pts = [p for m in re.findall(r'points="([^"]*)"', c) for p in m.split()]
    pts += re.findall(r'<circle class="series"', c)
    ticks = len(re.findall(r'class="[xy]tick"', c))
    if len(pts) < 2 or ticks < 4:  # a line, and labelled axes
        ok = False
sys.exit(0 if ok else 1)
PY
}
check "every chart drawn with data points" charts_drawn
chromium --headless --no-sandbox --disable-gpu --window-size=1000,2400 \
  --screenshot="$work/report.png" "file://$work/report/report.html" >/dev/null 2>&1 || true
check "screenshot taken" test -s "$work/report.png"
if [[ -n ${KEEP_REPORT:-} ]]; then cp -r "$work/report" "$work/report.png" "$KEEP_REPORT/"; fi
# 5. A --duration shorter than the tool's own start-up (8 WebSocket client
# threads start before the workers): each worker's first job is due at the
# start, inside any --duration, so it runs; --duration keeps only the later
# ones from starting (docs/load.md). It was a race: the same command ran 1
# job (exit 0) or none (exit 3, "no job started before --duration ended").
# A small image: done in milliseconds on the idle worker.
mkdir -p "$work/small"
cp "$(dirname "$0")/../fuzz/seeds/image_loading/star_rgba.png" "$work/small/"
rc=0
"$load" --target "http://127.0.0.1:$po" --images "$work/small" --jobs 3 --concurrency 1 \
  --ws-clients 8 --duration 0.001 >"$work/short.txt" 2>"$work/short.err" || rc=$?
check "--duration 0.001: exit 0 (got $rc: $(tail -n 1 "$work/short.err"))" test "$rc" = 0
check "--duration 0.001: the first job ran, --duration stopped the other 2" \
  grep -q "^orfeas-load: 1 of 3 planned jobs ran .*(--duration stopped the rest)$" "$work/short.txt"
check "--duration 0.001: that job was accepted and completed" grep -q "accepted 1, completed 1, failed 0" "$work/short.txt"
finish
