#!/usr/bin/python3
"""The job store behind orfeasd (issue #11), on the real binary.

  store_flag           --store / ORFEAS_STORE: memory: runs; an unknown
                       scheme stops start-up (exit 2) naming the known ones;
                       --help lists the flag.
  refused_keeps_model  a generate refused with 429 leaves a completed job
                       as it was (its model downloadable); a later accepted
                       run in another format replaces the model and its file.

argv: CASE WORKDIR, like od_test.py.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import ORFEASD, Server, check, main, make_image, wait_for  # noqa: E402


def case_store_flag(work):
    p = subprocess.run([ORFEASD, "--help"], capture_output=True, timeout=10)
    check(b"--store" in p.stdout and b"ORFEAS_STORE" in p.stdout, "--help lists --store and ORFEAS_STORE")
    p = subprocess.run([ORFEASD, "--store", "nosuch://x", "--data-dir", os.path.join(work, "d0")],
                       capture_output=True, timeout=10)
    check(p.returncode == 2 and b"--store" in p.stderr and b"nosuch://x" in p.stderr and b"memory:" in p.stderr,
          "unknown scheme: exit 2, naming the value and the known stores (%s)" % p.stderr.strip())
    s = Server(os.path.join(work, "data"), env={"ORFEAS_STORE": "memory:"})
    check(s.json("GET", "/ready")[0] == 200, "ORFEAS_STORE=memory: starts and is ready")
    check(s.stop() == 0, "exit 0")


def case_refused_keeps_model(work):
    img = make_image("png", 256, os.path.join(work, "star.png"))
    pause = os.path.join(work, "pause")
    s = Server(os.path.join(work, "data"), "--workers", "1", "--queue-size", "1", "--pause-file", pause)
    a = s.upload(img)[2]["job_id"]
    check(s.generate(a, "stl")[0] == 202 and s.wait_job(a)["status"] == "completed", "job A completed (stl)")
    url = s.status(a)["download_url"]
    st, _, model = s.request("GET", url)
    check(st == 200 and len(model) > 84, "A's model downloads")

    open(pause, "w").close()
    b, c = (s.upload(img)[2]["job_id"] for _ in range(2))
    check(s.generate(b, "obj")[0] == 202, "job B accepted")
    wait_for(lambda: s.json("GET", "/api/health")[2]["workers"]["busy"] == 1, "the worker to hold job B")
    check(s.generate(c, "ply")[0] == 202, "job C queued: the queue (size 1) is full")
    for fmt, kw in (("glb", {}), ("stl", {"quality": 3})):
        st, hd, _ = s.generate(a, fmt, **kw)
        check(st == 429 and hd.get("retry-after"), "A again (%s %s): 429, the queue is full" % (fmt, kw))
        js = s.status(a)
        check(js["status"] == "completed" and js["download_url"] == url, "A is still completed, same download")
        st, _, again = s.request("GET", url)
        check(st == 200 and again == model, "A's model still downloads, byte-identical")

    os.unlink(pause)
    for jid in (b, c):
        check(s.wait_job(jid)["status"] == "completed", "held job %s completed" % jid[:8])
    check(s.generate(a, "glb")[0] == 202 and s.wait_job(a)["status"] == "completed", "A again in glb: completed")
    js = s.status(a)
    check(js["download_url"] != url and js["output_file"].endswith(".glb"), "A's model is now the GLB")
    check(s.request("GET", url)[0] == 404, "the old STL's URL: 404")
    outputs = sorted(os.listdir(os.path.join(work, "data", "outputs")))
    check(("model_%s.stl" % a) not in outputs and ("model_%s.glb" % a) in outputs,
          "the old STL file is gone from outputs/, the GLB is there (%s)" % outputs)
    check(s.stop() == 0, "exit 0")


if __name__ == "__main__":
    main({"store_flag": case_store_flag, "refused_keeps_model": case_refused_keeps_model})
