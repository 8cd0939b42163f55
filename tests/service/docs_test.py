#!/usr/bin/python3
"""docs/metrics.md against a live orfeasd's /metrics, both ways (see
tests/tools/metrics_doc_check.py). argv: CASE WORKDIR, like od_test.py."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import BUILD, Server, check, main  # noqa: E402

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


if __name__ == "__main__":
    main({"metrics_reference": case_metrics_reference,
          "monitoring_queries": case_monitoring_queries})
