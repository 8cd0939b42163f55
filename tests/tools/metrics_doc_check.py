#!/usr/bin/python3
"""Compares the metric families documented in docs/metrics.md with those an
orfeasd exposes on /metrics, both ways: every exposed family is documented,
and every documented family is exposed (with its type).

usage: metrics_doc_check.py DOCS_METRICS_MD METRICS_URL_OR_FILE [SRC_DIR]
A family is a row of a Markdown table whose first cell is `name` and whose
second cell is its type (counter, gauge, histogram).

With SRC_DIR (orfeasd's src/), also every error type the sources can count
in orfeas_errors_total (the type of od_respond_error, of an od_error and of
od_metric_error, written as a literal) must be in the type list of its row:
most types appear only with their first error, so /metrics cannot show
them, and alert rules and dashboards are checked against this list
(tests/monitoring/check-metric-names --doc).
"""
import glob
import os
import re
import sys
import urllib.request

doc_path, source = sys.argv[1], sys.argv[2]
src_dir = sys.argv[3] if len(sys.argv) > 3 else None
documented, label_cells = {}, {}
for line in open(doc_path, encoding="utf-8"):
    m = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(counter|gauge|histogram)\s*\|([^|]*)\|", line)
    if m:
        documented[m.group(1)] = m.group(2)
        label_cells[m.group(1)] = m.group(3)

if source.startswith("http://"):
    text = urllib.request.urlopen(source, timeout=10).read().decode()
else:
    text = open(source, encoding="utf-8").read()
exposed = {}
for line in text.splitlines():
    m = re.match(r"^# TYPE (\S+) (\S+)$", line)
    if m:
        exposed[m.group(1)] = m.group(2)

fail = 0
for name, typ in sorted(exposed.items()):
    if name not in documented:
        print(f"FAIL: {name} ({typ}) is exposed but not in {doc_path}")
        fail = 1
    elif documented[name] != typ:
        print(f"FAIL: {name} is a {typ} on /metrics but documented as {documented[name]}")
        fail = 1
for name in sorted(set(documented) - set(exposed)):
    print(f"FAIL: {name} is documented but not exposed")
    fail = 1
if not exposed:
    print("FAIL: no metric families found on /metrics")
    fail = 1
if src_dir:
    types = {}
    for path in sorted(glob.glob(os.path.join(src_dir, "*.c"))):
        text = open(path, encoding="utf-8").read()
        for pat in (r'od_respond_error\(\s*\w+,\s*\w+,\s*\w+,\s*[^,]+,\s*"(\w+)"',
                    r'\.type\s*=\s*(?:[^;,{}]*\?\s*)?"(\w+)"(?:\s*:\s*"(\w+)")?',
                    r'od_metric_error\(\s*[^,]+,\s*"(\w+)"',
                    r'const char \*type = "(\w+)"', r'\btype = "(\w+)";'):
            for m in re.finditer(pat, text):
                for t in m.groups():
                    if t:
                        types.setdefault(t, os.path.basename(path))
    lm = re.search(r"`type`\s*\(([^()]*)\)", label_cells.get("orfeas_errors_total", ""))
    listed = set(re.findall(r"\w+", lm.group(1))) if lm else set()
    for t in sorted(set(types) - listed):
        print(f"FAIL: orfeas_errors_total type {t!r} ({types[t]}) is not in the type list of {doc_path}")
        fail = 1
    if len(types) < 10:  # the patterns no longer find the types
        print(f"FAIL: only {len(types)} error types found in {src_dir}/*.c")
        fail = 1
if not fail:
    print(f"ok: {len(exposed)} families exposed, all documented; {len(documented)} documented, all exposed")
sys.exit(fail)
