#!/usr/bin/env bash
# promtool check metrics on the metrics fixture: the good exposition must pass
# with no lint output, the broken one must fail naming its problem.
set -u
promtool=$1 dump=$2
out=$("$dump" text | "$promtool" check metrics 2>&1); rc=$?
if [[ $rc -ne 0 || -n $out ]]; then
  echo "FAIL: promtool rejected the fixture (rc=$rc):"; echo "$out"; exit 1
fi
echo "ok: promtool accepts the fixture ($("$dump" text | grep -vc '^#') samples)"
out=$("$dump" broken | "$promtool" check metrics 2>&1); rc=$?
if [[ $rc -eq 0 || $out != *'bad_counter counter metrics should have "_total" suffix'* ]]; then
  echo "FAIL: promtool did not reject the broken exposition (rc=$rc): $out"; exit 1
fi
echo "ok: promtool rejects the broken exposition: $out"
