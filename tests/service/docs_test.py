#!/usr/bin/python3
"""docs/metrics.md against a live orfeasd's /metrics, both ways (see
tests/tools/metrics_doc_check.py). argv: CASE WORKDIR, like od_test.py."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import BUILD, Server, check, main  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def case_metrics_reference(work):
    state = os.path.join(work, "gpu.state")
    with open(state, "w") as f:
        f.write("gpus=1\n")
    s = Server(os.path.join(work, "data"), "--nvml-lib", os.path.join(BUILD, "libfake-nvml.so"),
               env={"FAKE_NVML_STATE": state})
    try:
        url = "http://127.0.0.1:%d/metrics" % s.port
        p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/tools/metrics_doc_check.py"),
                            os.path.join(ROOT, "docs/metrics.md"), url, os.path.join(ROOT, "src")],
                           capture_output=True, text=True)
        print(p.stdout, end="")
        check(p.returncode == 0, "docs/metrics.md lists exactly the families /metrics exposes")
    finally:
        s.stop()


if __name__ == "__main__":
    main({"metrics_reference": case_metrics_reference})
