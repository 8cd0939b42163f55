#!/usr/bin/python3
"""docs/metrics.md against a live orfeasd's /metrics, both ways (see
tests/tools/metrics_doc_check.py); the monitoring's queries against it;
docs/api.md's flag table against orfeasd --help; api.md's error types and
the runbook's silences against what they name. argv: CASE WORKDIR, like
od_test.py."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import BUILD, ORFEASD, Server, check, main  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def fake_gpu_server(work):
    """orfeasd with one GPU of the fake NVML, so its GPU families show."""
    state = os.path.join(work, "gpu.state")
    with open(state, "w") as f:
        f.write("gpus=1\n")
    return Server(os.path.join(work, "data"), "--nvml-lib", os.path.join(BUILD, "libfake-nvml.so"),
                  env={"FAKE_NVML_STATE": state})


def case_metrics_reference(work):
    s = fake_gpu_server(work)
    try:
        url = "http://127.0.0.1:%d/metrics" % s.port
        p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/tools/metrics_doc_check.py"),
                            os.path.join(ROOT, "docs/metrics.md"), url, os.path.join(ROOT, "src")],
                           capture_output=True, text=True)
        print(p.stdout, end="")
        check(p.returncode == 0, "docs/metrics.md lists exactly the families /metrics exposes")
    finally:
        s.stop()


def case_monitoring_queries(work):
    """Every metric name, label and label value that the alert and recording
    rules, the three dashboards (and so the console pages, generated from
    the same source) and orfeas-report's queries name exists on a live
    orfeasd's /metrics (with the fake NVML), or is listed for its family in
    docs/metrics.md (values that appear with their first event). A
    misspelt label value matches nothing: an empty panel or an alert that
    cannot fire, with no error anywhere."""
    s = fake_gpu_server(work)
    try:
        m = os.path.join(ROOT, "monitoring")
        args = ["--rules", os.path.join(m, "prometheus/recording_rules.yml"),
                "--rules", os.path.join(m, "prometheus/alert_rules.yml"),
                "--report", os.path.join(ROOT, "tools/report/gather.c"),
                "--doc", os.path.join(ROOT, "docs/metrics.md"),
                # node-exporter's and the Redis exporter's: the live run
                # (monitoring.live_run) checks those against the real ones.
                "--skip-prefix", "node_", "--skip-prefix", "redis_",
                "--exposition", "http://127.0.0.1:%d/metrics" % s.port]
        for d in sorted(os.listdir(os.path.join(m, "grafana_dashboards"))):
            args += ["--dashboard", os.path.join(m, "grafana_dashboards", d)]
        p = subprocess.run([os.path.join(ROOT, "tests/monitoring/check-metric-names")] + args,
                           capture_output=True, text=True)
        print(p.stdout + p.stderr, end="")
        check(p.returncode == 0, "the monitoring's queries name only metrics, labels and values orfeasd has")
    finally:
        s.stop()


def help_flags(text):
    """orfeasd --help: {flag: (variable, default or None)}."""
    out = {}
    for m in re.finditer(r"^  (--[a-z0-9-]+)\s+(\S+)\s+(.*)$", text, re.M):
        d = re.findall(r"\bdefault:? ([^);]*)", m.group(3))
        out[m.group(1)] = (m.group(2), d[-1].strip() if d else None)
    return out


def table_flags(text):
    """docs/api.md's flag table: {flag: its default cell}. A row may name two
    flags ("`--a N` / `--b N`" with "1 / 2" defaults)."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        flags = re.findall(r"`(--[a-z0-9-]+)", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")]
        for i, f in enumerate(flags):
            out[f] = defaults[i] if len(defaults) == len(flags) else cells[1]
    return out


def case_flags_reference(work):
    """Every flag orfeasd --help lists has its row in docs/api.md's flag
    table and no row names a flag orfeasd lacks; each flag's variable is
    ORFEAS_ and its name (what api.md promises); a number --help gives as
    the default is the table's default too."""
    del work
    p = subprocess.run([ORFEASD, "--help"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0, "orfeasd --help: exit 0")
    helped = help_flags(p.stdout)
    check(len(helped) >= 40, "--help lists the flags (%d found: the pattern still reads it)" % len(helped))
    with open(os.path.join(ROOT, "docs/api.md"), encoding="utf-8") as f:
        table = table_flags(f.read())
    missing = sorted(set(helped) - set(table))
    check(not missing, "every flag of --help has a row in docs/api.md's table (missing: %s)" % missing)
    extra = sorted(set(table) - set(helped))
    check(not extra, "every flag docs/api.md's table lists exists in --help (unknown: %s)" % extra)
    bad_var = ["%s %s" % (f, v) for f, (v, _) in sorted(helped.items())
               if f not in ("--help", "--version") and v != "ORFEAS_" + f[2:].upper().replace("-", "_")]
    check(not bad_var, "each flag's variable is ORFEAS_ and its name (not so: %s)" % bad_var)
    differ = []
    for f, (_, d) in sorted(helped.items()):
        if d is None or not re.fullmatch(r"-?[0-9.]+", d) or f not in table:
            continue
        cell = table[f].replace("`", "").split()
        if not cell or cell[0] != d:
            differ.append("%s: --help %s, table %r" % (f, d, table[f]))
    check(not differ, "numeric defaults agree between --help and docs/api.md (%s)" % "; ".join(differ))


def tool_help_options(text):
    """A tool's --help: {option: its text, continuation lines joined}."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (--[a-z-]+)(?: [A-Z]+)?\s+(.*)$", line)
        if m:
            cur = m.group(1)
            out[cur] = m.group(2)
        elif cur and re.match(r"^ {5,}\S", line):
            out[cur] += " " + line.strip()
        else:
            cur = None
    return out


def option_table(text):
    """The first "| option | default | meaning |" table of a docs page:
    {option: (default cell, meaning cell)}, backquotes dropped."""
    out, inside = {}, False
    for line in text.splitlines():
        if line.startswith("| option | default | meaning |"):
            inside = True
        elif inside and line.startswith("| `--"):
            cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
            out[cells[0].split()[0]] = (cells[1], cells[2])
        elif inside and not line.startswith("|"):
            break
    return out


def case_tools_reference(work):
    """orfeas-report's and orfeas-load's --help against the option tables
    of docs/reports.md and docs/load.md, both ways: every option in both;
    a "(default X)" of --help is the table's default; a range "A to B" of
    --help is in the table's row too (the bounds the tool refuses past)."""
    del work
    for tool, page in (("orfeas-report", "docs/reports.md"), ("orfeas-load", "docs/load.md")):
        p = subprocess.run([os.path.join(BUILD, tool), "--help"], capture_output=True, text=True, timeout=10)
        check(p.returncode == 0, "%s --help: exit 0" % tool)
        helped = tool_help_options(p.stdout)
        check(len(helped) >= 10, "%s --help lists its options (%d found)" % (tool, len(helped)))
        with open(os.path.join(ROOT, page), encoding="utf-8") as f:
            table = option_table(f.read())
        check(not sorted(set(helped) - set(table)),
              "every option of %s --help has a row in %s (missing: %s)"
              % (tool, page, sorted(set(helped) - set(table))))
        check(not sorted(set(table) - set(helped)),
              "every option %s lists is in %s --help (unknown: %s)" % (page, tool, sorted(set(table) - set(helped))))
        differ = []
        for opt, h in sorted(helped.items()):
            if opt not in table:
                continue
            d = re.search(r"\(default ([^()]+)\)", h)
            if d and table[opt][0].split()[:1] != [d.group(1)]:
                differ.append("%s: default %s in --help, %r in %s" % (opt, d.group(1), table[opt][0], page))
            for lo, hi in re.findall(r"\b([0-9][0-9.]*[a-z]*) to ([0-9][0-9.]*[a-z]*)\b", h):
                if "%s to %s" % (lo, hi) not in table[opt][1]:
                    differ.append("%s: %s to %s in --help, not in %s's row" % (opt, lo, hi, page))
        check(not differ, "%s --help and %s agree on defaults and ranges (%s)" % (tool, page, "; ".join(differ)))


def error_types(text, anchor):
    """The backquoted words of the parenthesis that follows anchor (the
    first `type` list after it)."""
    i = text.index(anchor)
    j = text.index("(", i)
    depth, k = 0, j
    while True:  # to the matching ")": the list holds parentheses of its own
        depth += {"(": 1, ")": -1}.get(text[k], 0)
        if depth == 0:
            break
        k += 1
    body = re.sub(r"\([^()]*\)", "", text[j + 1:k])  # the notes beside a type
    return re.findall(r"`([a-z_]+)`", body) or [w.strip() for w in body.split(",")]


def error_table(text):
    """docs/api.md's table of error types: {type: the statuses of its row}."""
    out, inside = {}, False
    for line in text.splitlines():
        if line.startswith("| type | status | when |"):
            inside = True
        elif inside and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[cells[0].strip("`")] = set(re.findall(r"\b[1-5][0-9][0-9]\b", cells[1]))
        elif inside and not line.startswith("|"):
            break
    return out


def source_statuses():
    """{type: the HTTP statuses orfeasd's sources answer it with}: the
    status and type of od_respond_error, of an od_error literal, and of a
    validation error (type validation)."""
    import glob
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "*.c"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r'od_respond_error\(\s*\w+,\s*\w+,\s*\w+,\s*(\d+),\s*"(\w+)"', text):
            out.setdefault(m.group(2), set()).add(m.group(1))
        for m in re.finditer(r'\.status\s*=\s*(\d+),\s*\.type\s*=\s*(?:[^;,{}]*\?\s*)?"(\w+)"'
                             r'(?:\s*:\s*"(\w+)")?', text):
            for t in m.groups()[1:]:
                if t:
                    out.setdefault(t, set()).add(m.group(1))
        for m in re.finditer(r'\bvalidation_error(?:_ex)?\(\s*\w+,\s*\w+,\s*\w+,\s*'
                             r'(?:\(od_error\)\{\.status\s*=\s*)?([^,]+),', text):
            out.setdefault("validation", set()).update(re.findall(r"\b[1-5][0-9][0-9]\b", m.group(1)))
    return out


def alert_labels():
    """{alert: the labels its firing alerts carry}, from the rule unit
    tests' exp_labels (promtool checks those against the rules)."""
    import yaml
    with open(os.path.join(ROOT, "monitoring/prometheus/alert_rules_test.yml")) as f:
        tests = yaml.safe_load(f)["tests"]
    out = {}
    for t in tests:
        for a in t.get("alert_rule_test") or []:
            for e in a.get("exp_alerts") or []:
                out.setdefault(a["alertname"], set()).update(e.get("exp_labels", {}))
    return out


def case_cross_reference(work):
    """What the prose names exists in the code: docs/api.md's table of
    orfeas_errors_total types is docs/metrics.md's list (which
    docs.metrics_reference checks against the sources), each status the
    sources answer a type with is in that type's row, and every silence
    docs/runbook.md gives matches only labels its alert has (a matcher on a
    label the alert lacks silences nothing: the page goes on)."""
    del work
    with open(os.path.join(ROOT, "docs/api.md"), encoding="utf-8") as f:
        api = f.read()
    with open(os.path.join(ROOT, "docs/metrics.md"), encoding="utf-8") as f:
        metrics = f.read()
    table = error_table(api)
    a = list(table)
    m = error_types(metrics, "| `orfeas_errors_total` | counter | `type`")
    check(len(m) >= 20, "metrics.md's orfeas_errors_total types read (%d)" % len(m))
    check(sorted(set(a)) == sorted(set(m)),
          "api.md's table of errors names the types metrics.md lists (only in api.md: %s; only in metrics.md: %s)"
          % (sorted(set(a) - set(m)), sorted(set(m) - set(a))))
    src = source_statuses()
    check(sum(len(v) for v in src.values()) >= 25, "the statuses of the sources' errors read (%s)" % src)
    missing = ["%s %s" % (t, st) for t, sts in sorted(src.items()) for st in sorted(sts - table.get(t, set()))]
    check(not missing, "every status the sources answer a type with is in api.md's row of it (missing: %s)"
          % "; ".join(missing))
    with open(os.path.join(ROOT, "docs/runbook.md"), encoding="utf-8") as f:
        runbook = f.read().replace("\\\n", " ")
    labels = alert_labels()
    silences = re.findall(r"\balertname=(Orfeas[A-Za-z]+)((?:[ \t]+[a-z_]+=[^\s`]+)*)", runbook)
    check(len(silences) >= len(labels), "the runbook's silences read (%d)" % len(silences))
    bad = []
    for alert, rest in silences:
        if alert not in labels:
            bad.append("%s: no such alert" % alert)
            continue
        for k in re.findall(r"([a-z_]+)=", rest):
            if k not in labels[alert]:
                bad.append("%s has no label %s (it has %s)" % (alert, k, sorted(labels[alert])))
    check(not bad, "every runbook silence matches labels its alert has (%s)" % "; ".join(bad))


if __name__ == "__main__":
    main({"metrics_reference": case_metrics_reference,
          "monitoring_queries": case_monitoring_queries,
          "flags_reference": case_flags_reference,
          "tools_reference": case_tools_reference,
          "cross_reference": case_cross_reference})
