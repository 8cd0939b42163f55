#!/usr/bin/python3
"""Compares the metric families documented in docs/metrics.md with those an
orfeasd exposes on /metrics, both ways: every exposed family is documented,
and every documented family is exposed (with its type).

usage: metrics_doc_check.py DOCS_METRICS_MD METRICS_URL_OR_FILE
A family is a row of a Markdown table whose first cell is `name` and whose
second cell is its type (counter, gauge, histogram).
"""
import re
import sys
import urllib.request

doc_path, source = sys.argv[1], sys.argv[2]
documented = {}
for line in open(doc_path, encoding="utf-8"):
    m = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(counter|gauge|histogram)\s*\|", line)
    if m:
        documented[m.group(1)] = m.group(2)

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
if not fail:
    print(f"ok: {len(exposed)} families exposed, all documented; {len(documented)} documented, all exposed")
sys.exit(fail)
