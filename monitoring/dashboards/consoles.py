"""The dashboards as Prometheus console pages, and the runbook as a page.

Used by monitoring/dashboards/generate. A console page is a Go template that
Prometheus renders itself (--web.console.templates): no Grafana needed, so an
operator on a machine without Docker sees the same three dashboards
(monitoring/consoles/orfeas-*.html, linked from index.html) with the same
panels, queries, units and thresholds as the Grafana JSON, from the same
source (dashboards.yml). How each Grafana panel type is shown:

- timeseries: a prom_console.js graph (Rickshaw; `stack` as stacked areas),
  y axis in the panel's unit, min/max as given; thresholds listed below it;
- heatmap: a graph of the same series (one line per bucket bound `le`, or
  per GPU for the utilisation heatmap) over the panel's time span;
- stat, gauge: each series' value now (a bar from min to max for a gauge),
  coloured by the thresholds;
- piechart: each series' value and its share of the total;
- bargauge: each series' value with a bar relative to the largest;
- table: each query's series, label columns and the value column named as
  in the Grafana table.

Variables: a URL parameter per variable of the source (job and instance;
default ".+", the "All" of Grafana), rate (for $__rate_interval, default 1m)
and range (for $__range, default 1h); graphs cover the span in the URL's
#pctc part (prom_console.js; 1 h by default). Graphs are drawn in the browser from
/api/v1/query_range, the other panels are rendered by Prometheus itself
(the template's `query`), so they show without JavaScript.

Each panel is a <div class="panel" data-panel="N" data-kind="graph|values">:
tests/monitoring/check-consoles checks in headless Chromium that every one
drew data.
"""
import html
import json
import os
import re

# Grafana unit -> (graph unit suffix, y axis / hover formatter in the page).
UNITS = {
    "percent": (" %", "F.plain"),
    "percentunit": (" %", "F.percentunit"),
    "celsius": (" °C", "F.plain"),
    "mbytes": (" MiB", "F.plain"),
    "s": (" s", "F.plain"),
    "reqps": (" req/s", "F.plain"),
    "short": ("", "F.humanize"),
    "none": ("", "F.plain"),
}
UNIT_WORDS = {"percent": "%", "percentunit": "%", "celsius": "°C", "mbytes": "MiB",
              "s": "seconds", "reqps": "requests/s", "short": "", "none": ""}


def go_str(s):
    """A Go template string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def go_legend(legend):
    """A Grafana legend ({{label}}) as Go template text ({{ .Labels.label }})."""
    if not legend or legend == "__auto":
        return "{{ range $k, $v := .Labels }}{{ $k }}={{ $v }} {{ end }}"
    parts = re.split(r"(\{\{\s*\w+\s*\}\})", legend)
    out = []
    for p in parts:
        m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", p)
        out.append("{{ .Labels.%s }}" % m.group(1) if m else html.escape(p))
    return "".join(out)


def js_legend(legend):
    """A Grafana legend as a prom_console.js name ([[label]])."""
    if not legend or legend == "__auto":
        return None
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", r"[[\1]]", legend)


VARS = ["job", "instance"]  # the source's variables (write_all sets them)


def go_expr(expr):
    """Template actions that set $e to EXPR with the page's variables in."""
    subs = [(r"\$__range\b", "$range"), (r"\$__rate_interval\b", "$rate")]
    subs += [(r"\$%s\b" % v, "$" + v) for v in VARS]
    return "{{ $e := %s%s }}" % (go_str(expr), "".join(
        " | reReplaceAll %s %s" % (go_str(pat), var) for pat, var in subs))


def threshold_class(p, value="$s.Value"):
    """Go template text giving the threshold class of VALUE."""
    steps = p.get("thresholds", [["green", None]])
    text = ""
    for color, v in reversed(steps[1:]):
        text += "{{ if ge %s %r }}th-%s{{ else }}" % (value, float(v), color)
    text += "th-%s" % steps[0][0] + "{{ end }}" * (len(steps) - 1)
    return text


def thresholds_line(p):
    steps = p.get("thresholds")
    if not steps or len(steps) < 2:
        return ""
    unit = UNIT_WORDS.get(p["unit"], "")
    scale = 100 if p["unit"] == "percentunit" else 1
    items = ", ".join(f'<span class="th-{c}">{c} from {v * scale:g}{(" " + unit) if unit else ""}</span>'
                      for c, v in steps[1:])
    return f'<p class="thresholds">Thresholds: {items}.</p>\n'


def graph_panel(p, n, expand):
    unit, fmt = UNITS[p["unit"]]
    targets = p["targets"]
    params = {
        "expr": [expand(t["expr"]) for t in targets],
        "renderer": "area" if p.get("stack") else "line",
        "yUnits": unit, "yTitle": "", "height": 180,
    }
    names = [js_legend(t.get("legend")) for t in targets]
    if any(names):
        params["name"] = [nm or "[[__name__]]" for nm in names]
    for k in ("min", "max"):
        if k in p:
            params[k] = p[k]
    if p.get("timeFrom"):
        params["duration"] = int(p["timeFrom"].rstrip("h")) * 3600
    js = json.dumps(params, ensure_ascii=False)
    if "{{" in js or "}}" in js:
        raise SystemExit(f"panel {p['title']!r}: a query holds '{{{{' or '}}}}'")
    return (f'<div class="graph" id="graph-{n}"></div>\n<script>\n'
            f'orfeasGraph("graph-{n}", {js}, {fmt});\n</script>\n')


def values_table(p, expr, value_header, label_header, legend, extra=None, by_value=False):
    """One instant query as a table: legend, value (threshold-coloured) and,
    with EXTRA=(header, expr, kind), an aligned second query (the same
    series, sorted the same way: by the legend's first label): a share or a
    bar. BY_VALUE: rows in the query's order (it sorts them itself)."""
    first = re.search(r"\{\{\s*(\w+)\s*\}\}", legend or "")
    sort = "" if by_value or not first else ' | sortByLabel "%s"' % first.group(1)
    out = [go_expr(expr), "{{ $rows := query $e" + sort + " }}"]
    if extra:
        out.append(go_expr(extra[1]).replace("$e :=", "$x :="))
        out.append("{{ $extra := query $x" + sort + " }}")
    if first and label_header == "series":
        label_header = first.group(1)
    out.append("{{ if $rows }}<table class=\"values\"><tr><th>%s</th><th>%s</th>%s</tr>"
               % (label_header, value_header, f"<th>{extra[0]}</th>" if extra else ""))
    out.append("{{ range $i, $s := $rows }}<tr><td>%s</td>"
               % go_legend(legend).replace(".Labels", "$s.Labels"))
    out.append('<td class="value %s">{{ template "orfeas_fmt" (args $s.Value %s) }}</td>'
               % (threshold_class(p), go_str(p["unit"])))
    if extra and extra[2] == "share":
        out.append("<td>{{ with $extra }}{{ with index . $i }}"
                   "{{ humanizePercentage .Value }}{{ end }}{{ end }}</td>")
    elif extra:
        out.append('<td>{{ with $extra }}{{ with index . $i }}<span class="bar %s-bg" '
                   'style="width: {{ printf "%%.0f" .Value }}px"></span>{{ end }}{{ end }}</td>'
                   % threshold_class(p, "$s.Value"))
    out.append("</tr>{{ end }}</table>{{ else }}<p class=\"nodata\">No data</p>{{ end }}\n")
    return "".join(out)


def values_panel(p, expand):
    kind = p["type"]
    out = []
    for t in p["targets"]:
        e = expand(t["expr"])
        legend = t.get("legend")
        if kind == "table":
            by = re.search(r"\bby \(([^)]*)\)", e)
            labels = [x.strip() for x in by.group(1).split(",")] if by else []
            legend = " ".join("{{%s}}" % lb for lb in labels) or None
            ref = "Value #" + chr(ord("A") + p["targets"].index(t))
            header = p.get("table", {}).get("columns", {}).get(ref, "value")
            unit = p.get("table", {}).get("units", {}).get(header, p["unit"])
            out.append(values_table(dict(p, unit=unit), f"sort_desc({e})", header,
                                    ", ".join(labels), legend, by_value=True))
        elif kind == "piechart":
            out.append(values_table(p, e, "value", "series", legend,
                                    ("share", f"({e}) / scalar(sum({e}))", "share")))
        elif kind == "bargauge":
            out.append(values_table(p, e, "value", "series", legend,
                                    ("", f"200 * ({e}) / scalar(max({e}))", "bar")))
        elif kind == "gauge":
            lo, hi = p.get("min", 0), p.get("max", 100)
            scale = 100 if p["unit"] == "percentunit" else 1
            span = f"{lo * scale:g} to {hi * scale:g} {UNIT_WORDS.get(p['unit'], '')}".strip()
            out.append(values_table(p, e, "value", "series", legend,
                                    (span, f"200 * (({e}) - {lo}) / ({hi} - {lo})", "bar")))
        else:  # stat
            out.append(values_table(p, e, "value", "series", legend))
    return "".join(out)


def page(d, expand):
    """A dashboard as a console page."""
    out = ['{{ template "orfeas_head" %s }}\n' % go_str(d["title"]),
           "".join('{{ $%s := or .Params.%s ".+" }}' % (v, v) for v in VARS)
           + '{{ $rate := or .Params.rate "1m" }}{{ $range := or .Params.range "1h" }}\n',
           f'<h1>{html.escape(d["title"])}</h1>\n<p class="lead">{html.escape(d["description"])} '
           f'The same panels as the Grafana dashboard <code>{d["uid"]}</code> '
           '(monitoring/dashboards/dashboards.yml).</p>\n',
           '<form class="vars" method="get">\n'
           + "".join(f'{v} <input name="{v}" value="{{{{ ${v} }}}}">\n' for v in VARS)
           + 'rate window <input name="rate" value="{{ $rate }}">\n'
           'instant panels over <input name="range" value="{{ $range }}">\n'
           '<button type="submit">apply</button>\n{{ template "orfeas_span" }}</form>\n',
           # The variables for the graphs' queries, as JavaScript strings.
           "<script>var V = {%s, __rate_interval: {{ $rate }}, __range: {{ $range }}};</script>\n"
           % ", ".join("%s: {{ $%s }}" % (v, v) for v in VARS),
           '{{ template "orfeas_graph_js" }}\n',
           '<div class="panels">\n']
    for n, p in enumerate(d["panels"], start=1):
        graph = p["type"] in ("timeseries", "heatmap")
        width = p.get("w", 12)
        unit = UNIT_WORDS.get(p["unit"], "")
        out.append(f'<div class="panel w{width}" id="panel-{n}" data-panel="{n}" '
                   f'data-kind="{"graph" if graph else "values"}" '
                   f'data-title="{html.escape(p["title"])}">\n'
                   f'<h2>{html.escape(p["title"])}'
                   f'{f" <span class=unit>({html.escape(unit)})</span>" if unit else ""}</h2>\n'
                   f'<p class="desc">{html.escape(p["description"])}</p>\n')
        out.append(graph_panel(p, n, expand) if graph else values_panel(p, expand))
        out.append(thresholds_line(p))
        out.append("</div>\n")
    out.append('</div>\n{{ template "orfeas_tail" }}\n')
    return "".join(out)


def index(dashboards):
    items = "".join(
        f'<li><a href="{{{{ pathPrefix }}}}/consoles/{d["uid"]}.html">{html.escape(d["title"])}</a>: '
        f'{html.escape(d["description"])}</li>\n' for d in dashboards)
    return ('{{ template "orfeas_head" "Consoles" }}\n<h1>ORFEAS</h1>\n'
            '<p class="lead">The ORFEAS dashboards, served by Prometheus itself (no Grafana '
            'needed): the same panels as the Grafana dashboards, generated from the same '
            'source.</p>\n<ul>\n' + items +
            '<li><a href="{{ pathPrefix }}/consoles/runbook.html">Runbook</a>: what to do '
            'for each alert (every alert\'s runbook_url points at its section).</li>\n</ul>\n'
            '<h2>Prometheus</h2>\n<ul>\n'
            '<li><a href="{{ pathPrefix }}/classic/alerts">Alerts</a>, '
            '<a href="{{ pathPrefix }}/classic/targets">targets</a>, '
            '<a href="{{ pathPrefix }}/classic/rules">rules</a>, '
            '<a href="{{ pathPrefix }}/classic/graph">graph</a> '
            '(Debian\'s Prometheus serves its own pages under /classic/)</li>\n</ul>\n'
            '<h2>Alertmanager</h2>\n<p>Debian\'s Alertmanager has no web UI: use '
            '<code>amtool</code> (docs/monitoring.md):</p>\n<pre>'
            'amtool --alertmanager.url=http://127.0.0.1:9093 alert query\n'
            'amtool --alertmanager.url=http://127.0.0.1:9093 silence add alertname=NAME '
            '--duration=2h --comment=WHY\n'
            'amtool --alertmanager.url=http://127.0.0.1:9093 silence query</pre>\n'
            '{{ template "orfeas_tail" }}\n')


# ---- the runbook: the Markdown subset docs/runbook.md uses ----------------

def inline(text):
    """Inline Markdown: `code`, **bold**, [text](url). Links to other docs/
    pages are not served here: they become the file's name."""
    out, pos = [], 0
    for m in re.finditer(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)]+)\)", text):
        out.append(html.escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            out.append(f"<strong>{inline(m.group(2))}</strong>")
        elif re.match(r"https?://", m.group(4)):
            out.append(f'<a href="{html.escape(m.group(4))}">{html.escape(m.group(3))}</a>')
        else:
            out.append(f"{html.escape(m.group(3))} (<code>docs/{html.escape(m.group(4))}</code>)")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def markdown(text, anchor):
    """Headings (with ids: anchor(heading)), paragraphs, bullet lists with
    indented continuation lines, fenced code."""
    out, para, items, code = [], [], [], None

    def flush():
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>\n")
            para.clear()
        if items:
            out.append("<ul>\n" + "".join(f"<li>{inline(' '.join(i))}</li>\n" for i in items) + "</ul>\n")
            items.clear()
    for line in text.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>\n")
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```"):
            flush()
            code = []
            continue
        m = re.match(r"(#{1,6})\s+(.*?)\s*$", line)
        if m:
            flush()
            level, title = len(m.group(1)), m.group(2)
            out.append(f'<h{level} id="{anchor(title)}">{inline(title)}</h{level}>\n')
        elif line.startswith("- "):
            if para:
                flush()
            items.append([line[2:].strip()])
        elif line.startswith("  ") and items:
            items[-1].append(line.strip())
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            para.append(line.strip())
    flush()
    return "".join(out)


def runbook_page(md_path, anchor):
    with open(md_path, encoding="utf-8") as f:
        body = markdown(f.read(), anchor)
    # The page is a Go template: a literal {{ in the runbook must stay text.
    body = body.replace("{{", '{{ "{{" }}')
    return ('{{ template "orfeas_head" "Runbook" }}\n'
            '<article class="runbook">\n'
            '<p class="lead">docs/runbook.md, rendered by monitoring/dashboards/generate; '
            "each alert's runbook_url opens its section here.</p>\n"
            + body + '</article>\n{{ template "orfeas_tail" }}\n')


def write_all(out_dir, dashboards, expand, variables, runbook_md, anchor):
    global VARS
    VARS = variables
    os.makedirs(out_dir, exist_ok=True)
    files = {"index.html": index(dashboards),
             "runbook.html": runbook_page(runbook_md, anchor)}
    for d in dashboards:
        files[d["uid"] + ".html"] = page(d, expand)
    for name, text in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    return sorted(files)
