#!/usr/bin/env bash
# promtool check metrics on the metrics fixture: the good exposition must pass
# with no lint output, the broken one must fail naming its problem.
# usage: promtool_check.sh PROMTOOL METRICS_DUMP
set -euo pipefail
promtool=$1 dump=$2
. "$(cd "$(dirname "$0")" && pwd)/testlib.sh"

"$dump" text >"$work/good.prom"
"$dump" broken >"$work/broken.prom"
rc=0
out=$("$promtool" check metrics <"$work/good.prom" 2>&1) || rc=$?
[[ $rc -eq 0 && -z $out ]] || fail "promtool rejected the fixture (rc=$rc): $out"
ok "promtool accepts the fixture ($(grep -vc '^#' "$work/good.prom") samples)"
rc=0
out=$("$promtool" check metrics <"$work/broken.prom" 2>&1) || rc=$?
[[ $rc -ne 0 && $out == *'bad_counter counter metrics should have "_total" suffix'* ]] ||
  fail "promtool did not reject the broken exposition (rc=$rc): $out"
ok "promtool rejects the broken exposition: $out"
