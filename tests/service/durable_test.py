#!/usr/bin/python3
"""Durable jobs (issue #11) on the real binary and its default store
(sqlite:DATA/jobs.db): what a crash, a restart, overload, a full disk and
retention do to jobs that got a 2xx.

  crash      kill -9 with jobs in every state (uploaded, queued x2,
             processing, completed, failed); restart: every job that got a
             2xx ends completed or failed with a reason, queued ones in
             order, the finished model downloads byte-identical, the
             metrics count what was recovered, a subscriber gets the end.
  sigterm    the same stop by SIGTERM: the running job finishes, the
             queued ones stay queued and run after the restart.
  torn       kill -9 while a model (and an upload) sits written but not yet
             renamed (ORFEAS_TEST_RENAME_PAUSE_FILE): no half file under a
             final name, the .tmp is swept at start, the job runs again.
  budget     --max-store-mb holds over 3 kill -9/restart rounds, with
             orphan files dropped in between; jobs removed for space
             answer 410 with the reason. Then uploads while a model is
             being stored (the pause file's word "commit") make room of
             their own: the room made for the model is held.
  polite     overload: a client that obeys Retry-After loses none of its
             uploads to a flood of others that needs the room (held
             slots), and every one of its jobs completes and downloads.
  retention  --result-ttl: a finished job is removed after it (410 with
             the reason on status, download, generate and subscribe), and
             still 410 after a restart; a generate held (at its cache
             hit's link, ORFEAS_TEST_RENAME_PAUSE_FILE) while its job is
             removed answers 410 too, not 404.
  badstore   a jobs.db that is not a job store, or from a newer schema:
             orfeasd exits non-zero naming the file (no fresh database).
  memo       the image memo (--image-memo-mb): a first upload's pixels
             serve its run (pixels_used), as its quality's grid once it
             is generated (the memo's bytes fall from the pixels' to the
             grid's while the job waits); the same bytes again skip the
             check and are stored as a hard link to the first file; a
             generate that hits the cache answers completed at once, its
             model a link to the first model; a job whose stored upload
             is deleted fails although the memo kept its pixels (the
             upload is the job's input); after kill -9 both jobs
             answer as before and both models download byte-identical.
  load_restart
             orfeas-load (4 jobs held queued, one WebSocket client) across a
             SIGTERM and a restart on the same port: no job lost, every one
             completed, its WebSocket client reconnected and subscribed
             again (the new process answered the subscriptions and sent the
             ends of the jobs it ran).
  stranded   a generate-3d held between its two store writes (the pause
             file's word "enqueue") past --stranded-age: the janitor queues
             the job again and a worker takes it; the held generate then
             answers 202 (it was accepted), not 503, and the job completes
             once, with orfeas_active_jobs back at 0.
  relink     a job generated again with the parameters it had (a cache hit
             onto its own model), then jobs of the same bytes that hit the
             cache, then the first job with other parameters (a run): the
             others' models and the cache's entry keep their bytes (a
             leftover hard link was opened in place and rewritten), and no
             .tmp is left in outputs/.
  shrink     20 uploads, then a restart with --max-jobs 16: the 4 oldest
             are removed at start-up and answer 410 with the reason, and
             still 410 (not 404) after one more restart (their tombstones
             are stored, not only kept in memory). Then 4 models (1.3 MB)
             and a restart with --max-store-mb 1: the oldest are removed
             at start-up until the data dir fits.
  fulldisk   a full disk (a small tmpfs): the job fails with the reason,
             uploads get 503, /ready 503; space back: service resumes, and
             a restart finds the store consistent. Skipped (with why) where
             no tmpfs can be mounted.

argv: CASE WORKDIR, like od_test.py.
"""
import glob
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from odlib import (BUILD, ORFEASD, STARTED, WS, Server, TestFailure, check, exposed, kill_started, main,  # noqa: E402
                   make_image, noise_png, value, wait_for)


def data_files(data):
    """{relative path: size} of uploads/ and outputs/."""
    out = {}
    for sub in ("uploads", "outputs"):
        for p in glob.glob(os.path.join(data, sub, "*")):
            out[os.path.join(sub, os.path.basename(p))] = os.path.getsize(p)
    return out


def failing_upload(s, img):
    """An uploaded job whose generation will fail: uploads are decoded whole
    before their 200 (issue #13), so instead of a broken image its stored
    image is deleted from the data dir: its worker fails it ("the uploaded
    image is gone")."""
    jid = s.upload(img)[2]["job_id"]
    for name in os.listdir(os.path.join(s.data_dir, "uploads")):
        if name.startswith(jid + "."):
            os.unlink(os.path.join(s.data_dir, "uploads", name))
    return jid


def started_order(srv, ids):
    """The jobs in the order this server started them (its log)."""
    order = []
    for ln in srv.lines:
        for jid in ids:
            if ("job %s started" % jid) in ln and jid not in order:
                order.append(jid)
    return order


def every_state(work, data, pause):
    """A server holding one job of each state; returns it, the ids and the
    finished model's bytes."""
    img = make_image("png", 256, os.path.join(work, "star.png"))
    s = Server(data, "--workers", "1", "--pause-file", pause)
    ids = {}
    ids["completed"] = s.upload(img)[2]["job_id"]
    check(s.generate(ids["completed"], "stl", quality=1)[0] == 202 and
          s.wait_job(ids["completed"])["status"] == "completed", "job C completed")
    model = s.request("GET", s.status(ids["completed"])["download_url"])[2]
    ids["failed"] = failing_upload(s, img)
    check(s.generate(ids["failed"], "stl")[0] == 202, "job F accepted")
    failed = s.wait_job(ids["failed"])
    check(failed["status"] == "failed" and failed["error"], "job F failed: %s" % failed.get("error"))
    open(pause, "w").close()
    ids["processing"] = s.upload(img)[2]["job_id"]
    check(s.generate(ids["processing"], "obj", quality=1)[0] == 202, "job R accepted")
    wait_for(lambda: s.status(ids["processing"])["status"] == "processing", "job R to be held running")
    for k in ("queued1", "queued2"):
        ids[k] = s.upload(img)[2]["job_id"]
        check(s.generate(ids[k], "ply", quality=1)[0] == 202, "job %s accepted" % k)
    ids["uploaded"] = s.upload(img)[2]["job_id"]
    states = {k: s.status(v)["status"] for k, v in ids.items()}
    check(states == {"completed": "completed", "failed": "failed", "processing": "processing",
                     "queued1": "queued", "queued2": "queued", "uploaded": "uploaded"},
          "one job in every state: %s" % states)
    return s, ids, model, failed["error"]


def after_restart(s, ids, model, failed_error, was_running):
    """What must hold once orfeasd is back (no pause file)."""
    for k in ("processing", "queued1", "queued2"):
        js = s.wait_job(ids[k])
        check(js["status"] == "completed", "job %s (202 before the stop) completed after it" % k)
        st, hd, body = s.request("GET", js["download_url"])
        check(st == 200 and len(body) > 84, "its model downloads")
    order = started_order(s, [ids[k] for k in ("processing", "queued1", "queued2")])
    want = [ids[k] for k in (("processing",) if was_running else ()) + ("queued1", "queued2")]
    check(order == want, "they ran in the order they were queued (%s)" % [i[:8] for i in order])
    js = s.status(ids["completed"])
    check(js["status"] == "completed", "the finished job still answers completed")
    st, _, again = s.request("GET", js["download_url"])
    check(st == 200 and again == model, "its model downloads byte-identical (%d bytes)" % len(again))
    js = s.status(ids["failed"])
    check(js["status"] == "failed" and js["error"] == failed_error, "the failed job keeps its reason")
    check(s.status(ids["uploaded"])["status"] == "uploaded", "the upload is kept")
    check(s.generate(ids["uploaded"], "stl", quality=1)[0] == 202 and
          s.wait_job(ids["uploaded"])["status"] == "completed", "and can be generated")
    ws = WS(s.port)
    ws.recv_event()
    ws.send_json({"event": "subscribe", "data": {"job_id": ids["processing"]}})
    got, _ = ws.events_until(lambda ev: ev["event"] == "generation_complete", timeout=10)
    check(got[-1]["event"] == "generation_complete", "a subscriber after the restart gets its end")
    ws.close()
    leftovers = [p for p in data_files(s.data_dir) if p.endswith(".tmp")]
    check(not leftovers, "no temporary file left (%s)" % leftovers)


def case_crash(work):
    data, pause = os.path.join(work, "data"), os.path.join(work, "pause")
    s, ids, model, failed_error = every_state(work, data, pause)
    s.proc.kill()
    s.proc.wait()
    os.unlink(pause)
    s = Server(data, "--workers", "1", "--pause-file", pause)
    sm = s.samples()
    for state, n in (("uploaded", 1), ("queued", 2), ("processing", 1), ("completed", 1), ("failed", 1)):
        check(value(sm, "orfeas_jobs_recovered_total", previous_state=state) == n,
              "orfeas_jobs_recovered_total{previous_state=%s} = %d" % (state, n))
    check(value(sm, "orfeas_jobs_reclaimed_total", reason="restart") == 1, "reclaimed{restart} = 1")
    after_restart(s, ids, model, failed_error, True)
    check(s.stop() == 0, "exit 0")


def case_sigterm(work):
    data, pause = os.path.join(work, "data"), os.path.join(work, "pause")
    s, ids, model, failed_error = every_state(work, data, pause)
    check(s.stop() == 0, "SIGTERM: exit 0")
    check(s.log_has(r"2 queued job\(s\) stay queued"), "the drain kept the 2 queued jobs queued")
    os.unlink(pause)
    s2 = Server(data, "--workers", "1", "--pause-file", pause)
    js = s2.status(ids["processing"])
    check(js["status"] == "completed", "the running job finished during the drain")
    sm = s2.samples()
    check(value(sm, "orfeas_jobs_recovered_total", previous_state="queued") == 2 and
          exposed(sm, "orfeas_jobs_reclaimed_total", reason="restart") == 0,
          "recovered{queued} = 2, nothing reclaimed")
    after_restart(s2, ids, model, failed_error, False)
    check(s2.stop() == 0, "exit 0")


def case_torn(work):
    data, hook = os.path.join(work, "data"), os.path.join(work, "hold-rename")
    img = make_image("png", 128, os.path.join(work, "star.png"))
    s = Server(data, "--workers", "1", env={"ORFEAS_TEST_RENAME_PAUSE_FILE": hook})
    x = s.upload(img)[2]["job_id"]
    open(hook, "w").close()
    check(s.generate(x, "stl")[0] == 202, "job X accepted")
    tmp = os.path.join(data, "outputs", "model_%s.stl.tmp" % x)
    final = os.path.join(data, "outputs", "model_%s.stl" % x)
    wait_for(lambda: os.path.exists(tmp) and os.path.getsize(tmp) > 84, "the model written, not renamed")
    # An upload caught the same way: its client never gets an answer.
    def stuck_upload():
        try:
            s.upload(img)
        except OSError:
            pass  # killed before it answered, as intended
    threading.Thread(target=stuck_upload, daemon=True).start()
    wait_for(lambda: glob.glob(os.path.join(data, "uploads", "*.tmp")), "an upload written, not renamed")
    s.proc.kill()
    s.proc.wait()
    os.unlink(hook)
    check(not os.path.exists(final), "no model under its final name after the kill")
    check(len(glob.glob(os.path.join(data, "uploads", "*.png"))) == 1, "only X's upload has a final name")
    # Paused, so the re-queued X cannot write a new model_X.stl.tmp before
    # the sweep is looked at (CI saw exactly that race).
    pause = os.path.join(work, "pause")
    open(pause, "w").close()
    s = Server(data, "--workers", "1", "--pause-file", pause)
    check(not glob.glob(os.path.join(data, "*", "*.tmp")), "the temporary files are swept at start")
    os.unlink(pause)
    js = s.wait_job(x)
    check(js["status"] == "completed", "X (processing when killed) ran again and completed")
    st, _, body = s.request("GET", js["download_url"])
    n = int.from_bytes(body[80:84], "little") if len(body) >= 84 else -1
    check(st == 200 and len(body) == 84 + 50 * n, "its STL is whole (84 + 50 x %d bytes)" % n)
    check(s.stop() == 0, "exit 0")


def case_budget(work):
    """--max-store-mb 1 with 340 KB models: 3 rounds of jobs, a kill -9
    with one running and orphans dropped; the data dir never exceeds it."""
    data, pause = os.path.join(work, "data"), os.path.join(work, "pause")
    img = make_image("png", 64, os.path.join(work, "star.png"))
    cap = 1 << 20
    removed, held = [], None

    def stored(s):
        sm = s.samples()
        return value(sm, "orfeas_store_bytes", kind="uploads") + value(sm, "orfeas_store_bytes", kind="outputs")

    for rnd in range(3):
        s = Server(data, "--workers", "1", "--max-store-mb", "1", "--pause-file", pause)
        files = data_files(data)
        check(sum(files.values()) <= cap, "round %d start: %d bytes in uploads/ + outputs/ (cap %d)" %
              (rnd, sum(files.values()), cap))
        if held:
            check(s.wait_job(held)["status"] == "completed", "the job killed running completed")
        wait_for(lambda: stored(s) == sum(data_files(data).values()),
                 "orfeas_store_bytes{uploads+outputs} to equal the files on disk")
        check(sum(data_files(data).values()) <= cap, "and they are within the cap")
        ids = []
        for k in range(4):
            jid = s.upload(img)[2]["job_id"]
            # Each its own width: none is a cache hit.
            check(s.generate(jid, "stl", quality=1, dimensions={"width": 10 + 5 * rnd + k})[0] == 202,
                  "round %d job %d accepted" % (rnd, k))
            check(s.wait_job(jid)["status"] == "completed", "and completed")
            ids.append(jid)
        check(sum(data_files(data).values()) <= cap, "round %d: still within the cap after 4 models" % rnd)
        gone = [j for j in ids if s.json("GET", "/api/job-status/" + j)[0] == 410]
        check(gone, "the oldest finished jobs were removed for space")
        st, _, body = s.json("GET", "/api/job-status/" + gone[0])
        check("space" in body["error"] and "--max-store-mb" in body["error"], "410 says why: %s" % body["error"])
        removed += gone
        open(pause, "w").close()
        held = s.upload(img)[2]["job_id"]
        s.generate(held, "stl", quality=1, dimensions={"width": 100 + rnd})
        wait_for(lambda: s.status(held)["status"] == "processing", "a job held running")
        s.proc.kill()
        s.proc.wait()
        os.unlink(pause)
        with open(os.path.join(data, "outputs", "model_00000000-0000-4000-8000-%012d.stl" % rnd), "wb") as f:
            f.write(b"\0" * 300000)  # no job owns it
        with open(os.path.join(data, "uploads", "stray.png.tmp"), "wb") as f:
            f.write(b"\0" * 300000)
    s = Server(data, "--workers", "1", "--max-store-mb", "1")
    check(sum(data_files(data).values()) <= cap, "after 3 crash/restart rounds: %d bytes (cap %d)" %
          (sum(data_files(data).values()), cap))
    check(all(s.json("GET", "/api/job-status/" + j)[0] == 410 for j in removed),
          "the %d jobs removed for space still answer 410" % len(removed))
    check(s.stop() == 0, "exit 0")
    budget_reserved(work)


def budget_reserved(work):
    """The room made for a model is held until its record commits: uploads
    that come while it is being stored (held by the pause file's word
    "commit") make room of their own. A model counts in the store's bytes
    only once its record commits; crash_torture.py found uploads taking
    the same room meanwhile, the data dir then over --max-store-mb (and
    still over after a kill -9 and a restart)."""
    data, pause = os.path.join(work, "reserved"), os.path.join(work, "pause")
    cap = 1 << 20
    s = Server(data, "--workers", "1", "--max-store-mb", "1", "--pause-file", pause)
    x = s.upload(make_image("png", 128, os.path.join(work, "x.png")))[2]["job_id"]
    with open(pause, "w") as f:
        f.write("commit\n")
    check(s.generate(x, "stl", quality=1)[0] == 202, "job X accepted")
    wait_for(lambda: value(s.samples(), "orfeas_job_commit_queue_depth") == 1,
             "X's end to hold in the committer, room made for its model")
    big = [s.upload(noise_png(256, 10 + k))[2]["job_id"] for k in range(4)]  # ~197 KB each
    os.unlink(pause)
    check(s.wait_job(x)["status"] == "completed", "X completed")
    used = sum(data_files(data).values())
    check(used <= cap, "uploads/ + outputs/ hold %d bytes, within --max-store-mb (%d)" % (used, cap))
    check(s.json("GET", "/api/job-status/" + big[0])[0] == 410,
          "the oldest unused upload was removed to make that room")
    check(s.stop() == 0, "exit 0")


def case_polite(work):
    """The issue's overload: one worker, a queue of 1, a data dir for a few
    uploads. A polite client uploads 4 images and generates them; those
    refused with 429 wait out their Retry-After while a flood of other
    uploads needs the room. Without the hold, the flood would remove the
    waiting uploads (they are the oldest idle jobs); with it, every one of
    the polite client's jobs is still there when it retries, and completes."""
    data, pause = os.path.join(work, "data"), os.path.join(work, "pause")
    img = make_image("png", 64, os.path.join(work, "star.png"))
    flood_img = noise_png(256, 1)  # ~197 KB each
    open(pause, "w").close()
    s = Server(data, "--workers", "1", "--queue-size", "1", "--max-store-mb", "2", "--pause-file", pause)
    polite = [s.upload(img)[2]["job_id"] for _ in range(4)]
    waiting = {}
    for jid in polite:
        st, hd, _ = s.generate(jid, "stl", quality=1)
        check(st in (202, 429), "generate %s: 202 or 429 (%d)" % (jid[:8], st))
        if st == 429:
            waiting[jid] = int(hd["retry-after"])
    check(len(waiting) >= 2, "overload: %d of 4 generates refused with 429 + Retry-After" % len(waiting))
    # While they wait, others upload 3 MB into a 2 MB data dir.
    flood_ok = sum(1 for _ in range(16) if s.upload(flood_img)[0] == 200)
    sm = s.samples()
    check(value(sm, "orfeas_jobs_removed_total", reason="space") >= 4,
          "the flood needed the room: %d uploads, %d jobs removed for space" %
          (flood_ok, value(sm, "orfeas_jobs_removed_total", reason="space")))
    os.unlink(pause)
    done, rounds = set(), 0
    while len(done) < 4 and rounds < 40:
        rounds += 1
        for jid in polite:
            if jid in done:
                continue
            st, _, js = s.json("GET", "/api/job-status/" + jid)
            check(st == 200, "the polite client's job %s is still there (%d)" % (jid[:8], st))
            if js["status"] == "completed":
                st, _, body = s.request("GET", js["download_url"])
                check(st == 200 and len(body) > 84, "job %s completed; its model downloads" % jid[:8])
                done.add(jid)
            elif js["status"] == "uploaded":
                st, hd, _ = s.generate(jid, "stl", quality=1)
                check(st in (202, 429), "retry of %s after its Retry-After: %d" % (jid[:8], st))
                if st == 429:
                    waiting[jid] = int(hd["retry-after"])
                else:
                    waiting.pop(jid, None)
        if len(done) < 4:
            # Obey the Retry-After given (the behaviour under test), or
            # give a running job a moment.
            time.sleep(max(waiting.values()) if waiting else 0.1)
    check(len(done) == 4, "all 4 of the polite client's jobs completed and downloaded (%d rounds)" % rounds)
    check(s.stop() == 0, "exit 0")


def case_retention(work):
    data = os.path.join(work, "data")
    img = make_image("png", 64, os.path.join(work, "star.png"))
    hold = os.path.join(work, "hold-rename")
    s = Server(data, "--workers", "1", "--result-ttl", "2", env={"ORFEAS_TEST_RENAME_PAUSE_FILE": hold})
    a = s.upload(img)[2]["job_id"]
    check(s.generate(a, "stl", quality=1)[0] == 202 and s.wait_job(a)["status"] == "completed", "job A completed")
    url = s.status(a)["download_url"]
    b = s.upload(img)[2]["job_id"]
    # B's generate (a cache hit on A's model) held at its link's rename,
    # after it read B's record, while the janitor removes B: it must answer
    # 410 with the reason like any generate of a removed job, not 404.
    open(hold, "w").close()
    held = []
    t = threading.Thread(target=lambda: held.append(s.generate(b, "stl", quality=1)), daemon=True)
    t.start()
    wait_for(lambda: os.path.exists(os.path.join(data, "outputs", "model_%s.stl.tmp" % b)),
             "B's generate to hold at its model's link")
    st, _, body = wait_for(lambda: (lambda r: r if r[0] == 410 else None)(s.json("GET", "/api/job-status/" + a)),
                           "job A to expire", timeout=10)
    check("expired" in body["error"] and "--result-ttl" in body["error"], "job-status: 410, %s" % body["error"])
    wait_for(lambda: s.json("GET", "/api/job-status/" + b)[0] == 410, "the unused upload B to expire too",
             timeout=10)
    os.unlink(hold)
    t.join(timeout=30)
    check(held and held[0][0] == 410 and "expired" in held[0][2].get("error", ""),
          "B's generate, held while B was removed: 410 with the reason (%r)" % ((held[0][0], held[0][2]) if held else None,))
    check(s.request("GET", url)[0] == 410, "download: 410")
    st, _, body = s.json("GET", url.replace("/api/download/", "/api/download-base64/"))
    check(st == 410 and "expired" in body["error"], "download-base64: 410 with the reason (%d)" % st)
    st, _, body = s.json("GET", "/api/preview/" + a)
    check(st == 410 and "expired" in body["error"], "preview: 410 with the reason (%d)" % st)
    check(s.generate(a, "stl")[0] == 410, "generate: 410")
    ws = WS(s.port)
    ws.recv_event()
    ws.send_json({"event": "subscribe", "data": {"job_id": a}})
    got, _ = ws.events_until(lambda ev: ev["event"] == "generation_error", timeout=5)
    check("removed" in got[-1]["data"]["error"] and got[-1]["data"]["recoverable"] is False,
          "a subscriber gets generation_error: %s" % got[-1]["data"]["error"])
    ws.close()
    check(data_files(data) == {}, "their files are gone")
    sm = s.samples()
    check(value(sm, "orfeas_jobs_removed_total", reason="expired") == 2 and value(sm, "orfeas_job_tombstones") == 2,
          "removed{expired} = 2, 2 tombstones")
    check(s.stop() == 0, "exit 0")
    s = Server(data, "--workers", "1")
    check(s.json("GET", "/api/job-status/" + a)[0] == 410, "after a restart: still 410")
    check(s.stop() == 0, "exit 0")


def case_badstore(work):
    for name, make, needle in (
            ("junk", lambda p: open(p, "wb").write(os.urandom(8192)), b"not a readable job store"),
            ("newer", lambda p: subprocess.run(["sqlite3", p, "PRAGMA user_version=9"], check=True),
             b"schema version 9")):
        data = os.path.join(work, name)
        os.makedirs(data)
        db = os.path.join(data, "jobs.db")
        make(db)
        before = open(db, "rb").read()
        p = subprocess.run([ORFEASD, "--listen", "127.0.0.1:0", "--data-dir", data], capture_output=True,
                           timeout=20)
        check(p.returncode != 0 and needle in p.stderr and db.encode() in p.stderr,
              "%s jobs.db: exit %d, %s" % (name, p.returncode, p.stderr.strip().splitlines()[-1:]))
        check(open(db, "rb").read() == before, "the file is left as it was")


def case_memo(work):
    data = os.path.join(work, "data")
    img = make_image("png", 200, os.path.join(work, "memo.png"))
    s = Server(data, "--workers", "1")
    a = s.upload(img)[2]["job_id"]
    check(s.generate(a, "stl", quality=1)[0] == 202 and s.wait_job(a)["status"] == "completed", "job A completed")
    sm = s.samples()
    check(value(sm, "orfeas_image_memo_events_total", event="pixels_used") == 1 and
          value(sm, "orfeas_image_memo_events_total", event="pixels_decoded") == 0,
          "job A ran on the upload check's pixels (pixels_used 1, pixels_decoded 0)")
    b = s.upload(img)[2]["job_id"]
    check(value(s.samples(), "orfeas_image_memo_events_total", event="check_skipped") == 1,
          "the same bytes again: check_skipped 1")
    up = {j: os.stat(os.path.join(data, "uploads", j + ".png")) for j in (a, b)}
    check(up[a].st_ino == up[b].st_ino and up[b].st_nlink == 2, "B's upload is a hard link to A's")
    st, _, body = s.generate(b, "stl", quality=1)
    check(st == 202 and body["status"] == "completed", "B's generate hits the cache: 202 completed")
    model = s.request("GET", s.status(a)["download_url"])[2]
    fresh = make_image("png", 120, os.path.join(work, "fresh.png"))
    c = s.upload(fresh)[2]["job_id"]
    os.unlink(os.path.join(data, "uploads", c + ".png"))
    check(s.generate(c, "stl", quality=1)[0] == 202, "job C accepted")
    js = s.wait_job(c)
    check(js["status"] == "failed" and "gone" in js["error"],
          "its stored upload deleted, job C fails though its pixels were kept: %s" % js.get("error"))
    s.proc.kill()
    s.proc.wait()
    s = Server(data, "--workers", "1")
    for j in (a, b):
        js = s.status(j)
        check(js["status"] == "completed", "after kill -9 job %s is completed" % j[:8])
        check(s.request("GET", js["download_url"])[2] == model, "and its model downloads byte-identical")
    check(s.stop() == 0, "exit 0")
    memo_grid(work, data)


def memo_grid(work, data):
    """A generate makes the kept pixels its quality's grid (imgmemo.c): the
    memo then holds the grid's cells (5 bytes each) instead of w*h*4 bytes
    of pixels, and the worker runs from it."""
    pause = os.path.join(work, "pause")
    open(pause, "w").close()
    s = Server(data, "--workers", "1", "--pause-file", pause)
    hold = s.upload(make_image("png", 150, os.path.join(work, "hold.png")))[2]["job_id"]
    check(s.generate(hold, "stl", quality=1)[0] == 202, "a job holds the worker (pause file)")
    side, entry = 210, 16384  # imgmemo.c's ENTRY_COST
    # Held at its first stage: its worker has taken its grid (the status
    # says processing a moment before that), its entry alone is left.
    wait_for(lambda: s.status(hold)["status"] == "processing" and
             value(s.samples(), "orfeas_image_memo_bytes") == entry, "the held job to have taken its grid")
    held = entry
    d = s.upload(make_image("png", side, os.path.join(work, "grid.png")))[2]["job_id"]
    pixels = value(s.samples(), "orfeas_image_memo_bytes") - held
    check(pixels == entry + side * side * 4, "its upload kept %d bytes: the pixels and the entry" % pixels)
    check(s.generate(d, "stl", quality=1)[0] == 202, "job D queued behind it")
    grid = value(s.samples(), "orfeas_image_memo_bytes") - held
    check(entry + 64 * 64 * 5 <= grid < entry + 64 * 64 * 5 + 1024,
          "its generate left %d bytes: quality 1's 64 x 64 grid, not the pixels" % grid)
    os.unlink(pause)
    check(s.wait_job(d)["status"] == "completed" and s.wait_job(hold)["status"] == "completed",
          "both complete")
    sm = s.samples()
    check(value(sm, "orfeas_image_memo_events_total", event="pixels_used") == 2 and
          value(sm, "orfeas_image_memo_events_total", event="pixels_decoded") == 0,
          "both ran on their checks' decodes (pixels_used 2, pixels_decoded 0)")
    check(value(sm, "orfeas_image_memo_bytes") == 2 * entry, "the memo keeps neither grid nor pixels after")
    check(s.stop() == 0, "exit 0")


def case_stranded(work):
    data = os.path.join(work, "data")
    pause = os.path.join(work, "pause")
    with open(pause, "w") as f:
        f.write("enqueue\n")
    s = Server(data, "--workers", "1", "--pause-file", pause, "--stranded-age", "1")
    jid = s.upload(make_image("png", 96, os.path.join(work, "star.png")))[2]["job_id"]
    answer = []
    t = threading.Thread(target=lambda: answer.append(s.generate(jid)), daemon=True)
    t.start()
    # The pause file also holds the worker at the job's first stage.
    wait_for(lambda: value(s.samples(), "orfeas_jobs_requeued_total") == 1 and
             s.status(jid)["status"] == "processing",
             "the janitor to queue the held job again and a worker to take it")
    check(not answer, "its generate-3d is still held")
    os.unlink(pause)
    t.join(timeout=30)
    check(answer and answer[0][0] == 202 and answer[0][2].get("job_id") == jid,
          "the held generate answers 202 for the job (it was accepted), got %s" % (answer[0][:1] if answer else None))
    check(s.wait_job(jid)["status"] == "completed", "the job completes")
    check(s.log_has(r"job %s was queued again by the janitor while its generate-3d waited" % jid),
          "the log says what happened")
    wait_for(lambda: value(s.samples(), "orfeas_active_jobs") == 0, "orfeas_active_jobs to be back at 0")
    check(len([ln for ln in s.lines if "job %s started" % jid in ln]) == 1, "it ran once")
    check(s.stop() == 0, "exit 0")


def case_relink(work):
    data = os.path.join(work, "data")
    s = Server(data, "--workers", "1")
    img = make_image("png", 96, os.path.join(work, "star.png"))

    def model(jid):
        st = s.wait_job(jid)
        check(st["status"] == "completed", "job %s completed" % jid)
        code, _, body = s.request("GET", st["download_url"])
        check(code == 200, "its model downloads")
        return hashlib.sha256(body).hexdigest()

    x = s.upload(img)[2]["job_id"]
    check(s.generate(x, "glb")[0] == 202, "x generated")
    first = model(x)
    check(s.generate(x, "glb")[0] in (200, 202), "x generated again, same parameters (a hit on its own model)")
    check(model(x) == first, "x's model unchanged")
    y = s.upload(img)[2]["job_id"]
    s.generate(y, "glb")
    check(model(y) == first, "y (same bytes and parameters) hit the cache")
    s.generate(x, "glb", dimensions={"width": 50, "height": 70, "depth": 5})
    check(model(x) != first, "x run again with other dimensions: a new model")
    check(model(y) == first, "y's model kept its bytes")
    z = s.upload(img)[2]["job_id"]
    s.generate(z, "glb")
    check(model(z) == first, "z (a hit on the cache's entry) gets the first model's bytes")
    left = [n for n in os.listdir(os.path.join(data, "outputs")) if n.endswith(".tmp")]
    check(not left, "no .tmp left in outputs/ (%s)" % left)
    check(s.stop() == 0, "exit 0")


def case_shrink(work):
    data = os.path.join(work, "data")
    img = make_image("png", 32, os.path.join(work, "star.png"))
    s = Server(data, "--max-jobs", "20")
    ids = [s.upload(img)[2]["job_id"] for _ in range(20)]
    check(s.stop() == 0, "exit 0")
    for round in (1, 2):
        s = Server(data, "--max-jobs", "16")
        codes = [s.json("GET", "/api/job-status/" + i)[0] for i in ids]
        gone = [i for i, c in zip(ids, codes) if c == 410]
        body = s.json("GET", "/api/job-status/" + gone[0])[2] if gone else {}
        check(len(gone) == 4 and codes.count(200) == 16 and "max-jobs" in body.get("error", ""),
              "start %d with --max-jobs 16: 4 jobs answer 410 with the reason, 16 are kept (%s)"
              % (round, sorted(set(codes))))
        check(s.stop() == 0, "exit 0")
    # A lowered --max-store-mb: the start removes the oldest finished jobs
    # until the data dir fits, before the listener opens (docs/runbook.md).
    data = os.path.join(work, "store")
    big = make_image("png", 128, os.path.join(work, "big.png"))
    s = Server(data, "--workers", "1")
    ids = []
    for k in range(4):  # ~340 KB models, each its own width (no cache hit)
        ids.append(s.upload(big)[2]["job_id"])
        check(s.generate(ids[-1], "stl", quality=1, dimensions={"width": 10 + k})[0] == 202 and
              s.wait_job(ids[-1])["status"] == "completed", "job %d completed" % k)
    check(s.stop() == 0, "exit 0")
    before = sum(data_files(data).values())
    s = Server(data, "--workers", "1", "--max-store-mb", "1")
    used = sum(data_files(data).values())
    check(before > 1 << 20 >= used, "restarted with --max-store-mb 1: %d bytes, were %d" % (used, before))
    st, _, body = s.json("GET", "/api/job-status/" + ids[0])
    check(st == 410 and "space" in body["error"] and s.status(ids[-1])["status"] == "completed",
          "the oldest job answers 410 (%s), the newest is kept" % body.get("error"))
    check(s.stop() == 0, "exit 0")


def case_fulldisk(work):
    mnt = os.path.join(work, "small")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], capture_output=True)
    if r.returncode != 0:
        print("SKIP: cannot mount a tmpfs here (%s): the full-disk case needs root and mount" %
              r.stderr.decode().strip())
        return
    try:
        fulldisk_on(work, os.path.join(mnt, "data"))
    finally:
        kill_started()
        subprocess.run(["umount", "-l", mnt])


def fill(path):
    """Writes zeros to path until the file system is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def fulldisk_on(work, data):
    img = make_image("png", 128, os.path.join(work, "star.png"))
    pause = os.path.join(work, "pause")
    # --min-free-mb 0: a 3 MB disk is below any sensible threshold; this
    # case is about the writes themselves failing (the threshold has
    # reliability.disk).
    s = Server(data, "--workers", "1", "--pause-file", pause, "--min-free-mb", "0")
    # B finished as GLB; D, the same bytes at other dimensions, puts that
    # result in the cache.
    other = {"width": 50, "height": 70, "depth": 5}
    b, d = (s.upload(img)[2]["job_id"] for _ in range(2))
    s.generate(b, "glb")
    sb = s.wait_job(b)
    b_model = s.request("GET", sb["download_url"])[2]
    s.generate(d, "glb", dimensions=other)
    check(sb["status"] == "completed" and s.wait_job(d)["status"] == "completed", "jobs B and D completed")
    a, c = (s.upload(img)[2]["job_id"] for _ in range(2))
    open(pause, "w").close()
    check(s.generate(a, "stl")[0] == 202, "job A accepted (held before its first stage)")
    wait_for(lambda: s.status(a)["status"] == "processing", "job A running")
    filler = os.path.join(os.path.dirname(data), "filler")
    fill(filler)
    os.unlink(pause)  # A runs on: its model cannot be written
    wait_for(lambda: s.json("GET", "/ready")[0] == 503, "/ready 503 on a full disk")
    st, _, body = s.upload(img)
    check(st == 503 and "space" in body["error"].lower(), "an upload: 503 (%s)" % body["error"])
    st, _, body = s.generate(c, "stl")
    check(st == 503 and s.status(c)["status"] == "uploaded",
          "a generate: 503 (%s), and job C stays as it was" % body.get("error"))
    # B again as GLB at D's dimensions (a cache hit onto B's own model's
    # name) while nothing can be committed: B stays completed, its model
    # the one it had.
    st, _, body = s.generate(b, "glb", dimensions=other)
    sb2 = s.status(b)
    code, _, now = s.request("GET", sb["download_url"])
    check(st == 503 and sb2["status"] == "completed" and code == 200 and now == b_model,
          "B generated again on a full disk: 503, still completed, its model unchanged (%d, %s, %d)"
          % (st, sb2["status"], code))
    os.unlink(filler)
    js = s.wait_job(a)
    check(js["status"] == "failed" and "space" in js["error"].lower(), "job A failed with the reason: %s" % js["error"])
    wait_for(lambda: s.json("GET", "/ready")[0] == 200, "/ready 200 once there is space again")
    check(s.generate(c, "stl", quality=1)[0] == 202 and s.wait_job(c)["status"] == "completed",
          "service resumes: job C completes")
    check(s.stop() == 0, "exit 0")
    s = Server(data, "--workers", "1", "--min-free-mb", "0")
    check(s.status(a) == js, "after a restart job A is failed with the same reason")
    check(s.status(c)["status"] == "completed", "and job C completed")
    check(s.stop() == 0, "exit 0")


def case_load_restart(work):
    data, pause = os.path.join(work, "data"), os.path.join(work, "pause")
    open(pause, "w").close()  # holds jobs before their first stage
    s = Server(data, "--workers", "1", "--pause-file", pause)
    port = s.port
    load = subprocess.Popen([os.path.join(BUILD, "orfeas-load"), "--target", "http://127.0.0.1:%d" % port,
                             "--synthetic", "--jobs", "4", "--concurrency", "4", "--ws-clients", "1",
                             "--quality", "1", "--duration", "60", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append(load)
    wait_for(lambda: value(s.samples(), "orfeas_queue_depth") == 3, "4 jobs accepted (1 held running, 3 queued)")
    # The pause file lifts at the drain: the held job finishes; 3 stay queued.
    check(s.stop() == 0, "SIGTERM under load: exit 0")
    # Back on the same port, still holding jobs: they may end only once the
    # client has subscribed again (else it could find them all ended).
    s = Server(data, "--workers", "1", "--pause-file", pause, listen="127.0.0.1:%d" % port)
    wait_for(lambda: (value(s.samples(), "orfeas_websocket_messages_sent_total", event_type="subscribed") or 0) >= 3,
             "the load's WebSocket client to reconnect and subscribe again to the 3 queued jobs", timeout=30)
    os.unlink(pause)
    try:
        out, err = load.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        load.kill()
        raise TestFailure("orfeas-load did not finish within 90 s")
    check(load.returncode == 0, "orfeas-load: exit 0, no job lost (stderr: %s)" % err.decode()[-300:])
    r = json.loads(out)
    check(r["jobs"]["completed"] == 4 and r["jobs"]["lost"] == 0,
          "all 4 jobs completed across the restart: %s" % r["jobs"])
    check(r["websocket"]["reconnects"] >= 1 and r["websocket"]["error_events"] == 0,
          "its WebSocket client reconnected (%s)" % r["websocket"])
    sm = s.samples()
    subs = value(sm, "orfeas_websocket_messages_sent_total", event_type="subscribed") or 0
    ends = value(sm, "orfeas_websocket_messages_sent_total", event_type="generation_complete") or 0
    check(subs >= 3 and ends >= 3,
          "the new process answered %d subscriptions and sent %d ends: the client subscribed again" % (subs, ends))
    check(s.stop() == 0, "exit 0")


if __name__ == "__main__":
    main({"crash": case_crash, "sigterm": case_sigterm, "torn": case_torn, "budget": case_budget,
          "polite": case_polite, "retention": case_retention, "badstore": case_badstore,
          "memo": case_memo, "fulldisk": case_fulldisk, "stranded": case_stranded, "load_restart": case_load_restart,
          "relink": case_relink, "shrink": case_shrink})
