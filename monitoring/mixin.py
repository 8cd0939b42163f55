"""What the monitoring generators and checks share: monitoring/config.yml,
the template substitution and the runbook anchors.

Imported by monitoring/prometheus/generate, monitoring/dashboards/generate,
scripts/stack-config and tests/monitoring/lint-alerts (Debian's python3-yaml
only)."""
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "config.yml")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading (the runbook page uses the
    same ids, so a runbook_url works on both)."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def config(path=CONFIG, runbook_base=None):
    """The config with the derived values. runbook_base, when given, replaces
    the part of runbookURLPattern before '#'."""
    with open(path, encoding="utf-8") as f:
        c = yaml.safe_load(f)
    if runbook_base:
        c["runbookURLPattern"] = runbook_base + "#%s"
    c["orfeasSelector"] = f'job="{c["orfeasJob"]}"'
    c["nodeSelector"] = f'job="{c["nodeJob"]}"'
    c["redisSelector"] = f'job="{c["redisJob"]}"'
    c["runbookBase"] = c["runbookURLPattern"].split("#", 1)[0]
    c["runbookInTests"] = c["runbookBase"].replace("{{ $externalURL }}", "")
    return c


def runbook_url(c, alert):
    return c["runbookURLPattern"] % github_anchor(alert)


def render(text, c):
    """TEXT with every %(name)s replaced by c[name]; %(runbookURL)s becomes the
    runbook URL of the alert whose `- alert: NAME` line came last. A name
    not in c is an error (a typo must not reach a rule file)."""
    out, alert = [], None
    for line in text.splitlines(keepends=True):
        m = re.match(r"\s*- alert: (\w+)", line)
        if m:
            alert = m.group(1)

        def value(m):
            key = m.group(1)
            if key == "runbookURL":
                if alert is None:
                    raise SystemExit(f"%(runbookURL)s outside an alert: {line.strip()}")
                return runbook_url(c, alert)
            if key not in c:
                raise SystemExit(f"unknown placeholder %({key})s in: {line.strip()}")
            return str(c[key])
        out.append(PLACEHOLDER.sub(value, line))
    return "".join(out)
