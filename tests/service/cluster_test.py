#!/usr/bin/python3
"""Cluster mode (issue #15) on the real binary: several orfeasd nodes, one
shared --data-dir and one real redis-server (a free loopback port, its own
folder, appendonly yes + appendfsync always), every process stopped by PID.
Short leases (--store-lease 1) keep it fast.

  once       3 nodes, 30 distinct jobs submitted round-robin: each completes,
             and each was started exactly once in the whole cluster; every
             node reports the empty backlog and the 3 nodes Redis knows.
  kill9      kill -9 of the node running a job: another node takes it over
             after the lease (attempt 2, counted as lease_expired) and
             completes it; WebSocket clients on both surviving nodes (so one
             is on a node that did not run it) get the completion.
  auth       a Redis that requires a password: --store-password-file (and
             an ACL user, redis://USER@...) works, and a rotated password is
             taken without a restart (the file is read at each new
             connection); no password, a wrong one,
             one in the URL, a missing file, a file for sqlite: start-up stops
             (exit 1) saying what to do; no password in any log.
  orphans    files of the shared data dir no job owns (an upload, a model,
             a .tmp), older than --orphan-age, are removed by the sweep;
             young files, foreign names and a live job's files stay. The
             sweep ages a file from its ctime too, which cannot be set
             back: the node's clock for it is put 2 h ahead
             (ORFEAS_TEST_ORPHAN_AHEAD_S) instead; unit.od_orphans checks
             that a name just linked to an old file is young.
  drain      SIGTERM to the node running a job held past --drain-timeout:
             it exits 0 without ending the job, and another node takes the
             job over after the lease (attempt 2) and completes it.
  partition  the node running a job is frozen (SIGSTOP) past its lease:
             another node completes it; thawed, the frozen node's end is
             refused (orfeas_jobs_fenced_total > 0) and the newer attempt's
             result stands.
  redis      Redis kill -9 with jobs running and queued: /ready and the API
             answer 503 while it is down, /api/health says degraded without
             job figures, and /metrics has orfeas_store_up 0 and none of the
             gauges read from the store (the backlog, active jobs, ...), not
             their last values; restarted on the same folder, they are back,
             and every accepted job completes.
  progress   a job running on node b, read on node a: job-status shows its
             stage and progress while it runs (from b's events). b's lease
             is 10 times shorter than a's: it never takes over the job a
             holds and renews (a claim lapses by its holder's lease).
  ratelimit  --rate-limit is one bucket per client for the whole cluster: a
             client that spent its burst on node a gets 429 on node b.
  lostreply  a job's completion that Redis made but whose reply was lost
             (ORFEAS_TEST_LOST_REPLY_FILE): the retried end is refused
             (the job has ended) and the node then sends the recorded
             completion; WebSocket clients on both nodes get it.
  churn      one client subscribes to 2000 distinct ids and unsubscribes
             each (Redis frozen): past --ws-max-subscriptions waiting
             refreshes it is refused ("subscribe again", counted), and a
             late subscribe to a finished job still hears its end; with
             the refresh queue full, a subscribe is told so, not dropped.
  storefail  a subscribe whose read of its job's current state fails
             (Redis frozen past the 2 s command timeout, or answering an
             error): the client is told to subscribe again (/ws and
             Socket.IO), counted (reason="store"); subscribing again, Redis
             back, brings the end.
  emptydir   a node started on an empty --data-dir (the mount missing)
             sees a completed job of the cluster without its model: it logs
             that once, with a count, and leaves the job completed for
             every node (the model still downloads from the others).

argv: CASE WORKDIR, like od_test.py.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from odlib import (ORFEASD, STARTED, WS, Server, TestFailure, check, check_within, exposed, free_port, main,  # noqa: E402
                   make_image, parse_metrics, wait_for)

LEASE = "1"
# The start of a line of orfeasd's log (text format): every line goes
# through the logger (its timestamp; one JSON object with --log-format json).
LOGGED = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z orfeasd: (?:warning: )?"


class Redis:
    """A redis-server of the test's own; restart() keeps its folder."""

    def __init__(self, work, *extra, password=None):
        self.extra, self.password = list(extra), password
        if password:
            self.extra += ["--requirepass", password]
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")] + self.extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(self.proc)
        wait_for(lambda: self.ping(), "redis-server to answer", timeout=10)

    def ping(self):
        if self.proc.poll() is not None:
            raise TestFailure("redis-server exited (rc=%s)" % self.proc.returncode)
        return self.cli("ping") == "PONG"

    def cli(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + auth + list(args), capture_output=True, text=True)
        return r.stdout.strip()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port


def node(work, redis, name, *args, pause=True, env=None):
    """A node on the shared data dir; its pause file (held jobs) is
    WORK/NAME.pause, created when pause is set."""
    pf = os.path.join(work, name + ".pause")
    if pause:
        open(pf, "w").close()
    s = Server(os.path.join(work, "shared"), "--store", redis.url, "--node-id", name,
               "--workers", "1", "--store-lease", LEASE, "--pause-file", pf, *args, env=env)
    s.name, s.pause = name, pf
    return s


def started(srv, jid):
    return sum(1 for ln in list(srv.lines) if ("job %s started" % jid) in ln)


def logged(pred, what, timeout=10):
    """A check on orfeasd's log made after its effect was seen over HTTP:
    orfeasd writes its log from a thread of its own and the test reads it
    from a pipe, so the line can come after the job-status that shows the
    job ended (under load, by a second; service.cluster_partition failed so
    once). Waits for pred with a deadline instead of reading at once."""
    return check_within(pred, what, timeout=timeout)


def holds(pred, what, seconds):
    """pred stays true for the whole window (a thing that must not happen,
    which would happen within it): a failure as soon as it does not."""
    deadline = time.monotonic() + seconds
    while True:
        ok = pred()
        if not ok or time.monotonic() >= deadline:
            check(ok, what)
            return
        time.sleep(0.05)


def metric(srv, name, **labels):
    """The series' value; a failure when it is not exposed (so a check for
    0 cannot pass on a missing series)."""
    return exposed(parse_metrics(srv.metrics()[2]), name, **labels)


def submit(srv, img):
    st, _, body = srv.upload(img)
    check(st == 200, "upload via %s: 200" % srv.name)
    jid = body["job_id"]
    st, _, body = srv.generate(jid)
    if st != 202:
        raise TestFailure("generate via %s: %d %r" % (srv.name, st, body))
    return jid


def case_once(work):
    redis = Redis(work)
    # A long lease: no takeover of a node slowed down by a loaded machine.
    nodes = [node(work, redis, n, "--store-lease", "5", pause=False) for n in ("a", "b", "c")]
    # The start-up banner names the store and the node's name in it.
    want = "  store     %s  (node a)" % redis.url
    check(any(ln.endswith(want) for ln in nodes[0].lines),
          "node a's start-up log names its store and node id (%r)" % want)
    ids = []
    for i in range(30):
        img = make_image("png", 64 + 2 * i, os.path.join(work, "img%d.png" % i))
        ids.append(submit(nodes[i % 3], img))
    ends = [nodes[(k + 1) % 3].wait_job(jid, timeout=60)["status"]  # asked on another node
            for k, jid in enumerate(ids)]
    check(ends == ["completed"] * 30,
          "30 jobs submitted round-robin to 3 nodes all completed (status read on another node): %s"
          % sorted(set(ends)))
    wait_for(lambda: all(any(started(s, jid) for s in nodes) for jid in ids),
             "every job's start to be in a node's log", timeout=10)
    runs = {jid: sum(started(s, jid) for s in nodes) for jid in ids}
    check(all(n == 1 for n in runs.values()), "each job was started exactly once in the cluster: %s" %
          sorted(set(runs.values())))
    ok = sum(metric(s, "orfeas_generation_3d_total", format="stl", status="success") for s in nodes)
    check(ok == 30, "the nodes counted 30 successes between them (got %d)" % ok)
    per_node = [sum(started(s, jid) for jid in ids) for s in nodes]
    print("jobs run per node:", per_node)
    # Each node reads the cluster's backlog from Redis once a second.
    check_within(lambda: [metric(s, "orfeas_queue_depth") for s in nodes] == [0, 0, 0],
                 "every node reports the same empty cluster backlog", timeout=5)
    check_within(lambda: [metric(s, "orfeas_store_nodes") for s in nodes] == [3, 3, 3],
                 "every node reports the 3 nodes Redis knows (orfeas_store_nodes)", timeout=5)
    check(redis.cli("xlen", "orfeas:jobs") == "0", "the stream holds no entry once all ended")


def held_on(srv, jid):
    """srv runs jid, held at its first stage by the pause file."""
    wait_for(lambda: started(srv, jid) > 0, "%s to start job %s" % (srv.name, jid), timeout=20)


def case_kill9(work):
    redis = Redis(work)
    img = make_image("png", 128, os.path.join(work, "star.png"))
    b = node(work, redis, "b")  # alone: it takes the job, and holds it
    jid = submit(b, img)
    held_on(b, jid)
    a = node(work, redis, "a", pause=False)
    c = node(work, redis, "c", pause=False)
    clients = {}
    for s in (a, c):  # whichever takes the job over, one client is elsewhere
        ws = WS(s.port)
        ws.recv_event()
        ws.send_json({"event": "subscribe", "data": {"job_id": jid}})
        clients[s.name] = ws
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    for name, ws in clients.items():
        got, _ = ws.events_until(lambda ev: ev["event"] == "generation_complete", timeout=20)
        check(got and got[-1]["event"] == "generation_complete",
              "the client on node %s got generation_complete" % name)
        ws.close()
    st = a.wait_job(jid, timeout=10)
    check(st["status"] == "completed", "the job is completed (read on node a)")
    wait_for(lambda: started(a, jid) + started(c, jid) > 0, "a surviving node to log the job's start", timeout=10)
    ran = [s for s in (a, c) if started(s, jid) == 1]
    check(len(ran) == 1 and started(a, jid) + started(c, jid) == 1,
          "exactly one surviving node ran it after b died: %s" % [s.name for s in ran])
    r = ran[0]
    logged(lambda: r.log_has(LOGGED + r"job %s: .*taken over as attempt 2" % jid),
           "node %s took it over as attempt 2 (a line of its log, with its timestamp)" % r.name)
    check_within(lambda: metric(r, "orfeas_jobs_reclaimed_total", reason="lease_expired") == 1,
                 "orfeas_jobs_reclaimed_total{reason=\"lease_expired\"} is 1 on node %s" % r.name, timeout=5)
    st, _, data = a.request("GET", st["download_url"])
    check(st == 200 and len(data) > 84, "the model downloads from node a (%d bytes)" % len(data))
    check(redis.cli("xpending", "orfeas:jobs", "workers").split("\n")[0] == "0",
          "no claim is left pending in the stream")


def case_drain(work):
    redis = Redis(work)
    img = make_image("png", 128, os.path.join(work, "star.png"))
    # --max-attempts 1: the drained run is not one of the job's tries.
    b = node(work, redis, "b", "--drain-timeout", "1", "--max-attempts", "1")
    with open(b.pause, "w") as f:
        f.write("drain\n")  # held through the drain too
    jid = submit(b, img)
    held_on(b, jid)
    a = node(work, redis, "a", "--max-attempts", "1", pause=False)
    check(b.stop(timeout=10) == 0, "node b: SIGTERM with the job held, exit 0")
    check(b.log_has(r"job %s: still running at --drain-timeout .* stopped; queued again, ahead of the jobs "
                    r"queued after it \(not counted as a try\)" % jid),
          "node b handed the job back, not counted as a try (its log)")
    check(not b.log_has(r"job %s (completed|failed)" % jid), "node b ended nothing")
    st = a.wait_job(jid, timeout=20)
    check(st["status"] == "completed", "node a completed the job")
    logged(lambda: started(a, jid) == 1, "node a ran it (its log)")
    # A handed-back job is claimed as a queued one: not a takeover of a
    # lapsed lease, so OrfeasJobsReclaimed stays quiet through a rolling
    # restart.
    check(not a.log_has(r"job %s: .*taken over" % jid) and
          metric(a, "orfeas_jobs_reclaimed_total", reason="lease_expired") == 0,
          "node a claimed it as a queued job, nothing reclaimed (reclaimed{lease_expired} 0)")
    check(redis.cli("xpending", "orfeas:jobs", "workers").split("\n")[0] == "0",
          "no claim is left pending in the stream")


def case_stranded(work):
    """A node killed between generate-3d's two store writes (the job queued
    in Redis, not yet in the stream; held there by the pause file's word
    "enqueue") leaves a job nothing would run, and whose client's new
    generate gets 409; another node's janitor queues it again once it is
    --stranded-age old, and it runs."""
    redis = Redis(work)
    img = make_image("png", 96, os.path.join(work, "star.png"))
    a = node(work, redis, "a")
    with open(a.pause, "w") as f:
        f.write("enqueue\n")
    st, _, body = a.upload(img)
    check(st == 200, "upload via a: 200")
    jid = body["job_id"]
    answer = []
    t = threading.Thread(target=lambda: answer.append(a.request("POST", "/api/generate-3d", json.dumps(
        {"job_id": jid, "format": "stl"}).encode(), {"Content-Type": "application/json"})), daemon=True)
    t.start()
    wait_for(lambda: a.status(jid).get("status") == "queued", "the job to be queued in the store")
    check(redis.cli("zscore", "orfeas:held", jid) != "" and redis.cli("xlen", "orfeas:jobs") == "0",
          "it is held (orfeas:held) and not in the stream")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    t.join(timeout=10)
    check(not answer or answer[0][0] != 202, "its generate never got a 202")
    # b holds what it runs (its own pause file): whether its janitor has
    # queued the job again yet or not, it is queued or held, never done,
    # when the new generate arrives.
    b = node(work, redis, "b", "--stranded-age", "1")
    st, _, _ = b.generate(jid)
    check(st == 409, "a new generate meanwhile: 409 (the job is queued or held), got %d" % st)
    held_on(b, jid)
    os.unlink(b.pause)
    done = b.wait_job(jid, timeout=30)
    check(done["status"] == "completed" and started(b, jid) == 1, "node b queued it again and ran it")  # held_on saw it
    check(b.log_has(r"1 queued job found in no dispatch queue .* queued again"), "node b's log says so")
    check(metric(b, "orfeas_jobs_requeued_total") == 1, "orfeas_jobs_requeued_total is 1 on node b")
    check(redis.cli("zcard", "orfeas:held") == "0", "nothing is left held")


def start_fails(work, name, *args):
    """orfeasd that must stop at start-up: (exit status, its stderr)."""
    r = subprocess.run([ORFEASD, "--listen", "127.0.0.1:0", "--node-id", name,
                        "--data-dir", os.path.join(work, name)] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


def case_auth(work):
    secret = "s3cret-%d-pw" % os.getpid()
    redis = Redis(work, password=secret)
    img = make_image("png", 64, os.path.join(work, "star.png"))
    pw = os.path.join(work, "redis.pw")
    with open(pw, "w") as f:
        f.write(secret + "\n")
    os.chmod(pw, 0o600)
    s = node(work, redis, "a", "--store-password-file", pw, pause=False)
    jid = submit(s, img)
    check(s.wait_job(jid, timeout=20)["status"] == "completed", "with --store-password-file: a job completes")
    check(s.stop() == 0, "exit 0")
    # An ACL user with its own password, limited to ORFEAS' keys and channel.
    check(redis.cli("ACL", "SETUSER", "orfeas", "on", ">user-pw-%d" % os.getpid(), "~orfeas:*", "&orfeas:*",
                    "+@all") == "OK", "an ACL user for orfeasd")
    upw = os.path.join(work, "user.pw")
    with open(upw, "w") as f:
        f.write("user-pw-%d\n" % os.getpid())
    url_user = "redis://orfeas@127.0.0.1:%d" % redis.port
    s = Server(os.path.join(work, "shared"), "--store", url_user, "--node-id", "u", "--workers", "1",
               "--store-password-file", upw)
    s.name = "u"
    jid = submit(s, img)
    check(s.wait_job(jid, timeout=20)["status"] == "completed", "as ACL user orfeas (~orfeas:* &orfeas:*): a job completes")
    # Rotation without a restart: a second password for the user, the file
    # rewritten, the old password removed and the node's connections cut:
    # it reconnects with the file's new line.
    old_pw, new_pw = "user-pw-%d" % os.getpid(), "user-pw2-%d" % os.getpid()
    check(redis.cli("ACL", "SETUSER", "orfeas", ">" + new_pw) == "OK", "a second password for user orfeas")
    with open(upw + ".new", "w") as f:
        f.write(new_pw + "\n")
    os.rename(upw + ".new", upw)
    check(redis.cli("ACL", "SETUSER", "orfeas", "<" + old_pw) == "OK", "the old password removed")
    redis.cli("CLIENT", "KILL", "USER", "orfeas")
    # The first request on a killed connection may get 503 (the API's answer
    # while the store cannot be reached; not retried: a script may have run):
    # a client retries, as Retry-After says.
    wait_for(lambda: s.upload(img)[0] == 200, "an upload to succeed again after the connections were cut",
             timeout=10)
    jid = submit(s, img)
    check(s.wait_job(jid, timeout=20)["status"] == "completed",
          "after the rotation (old password gone, connections cut): a job completes, no restart")
    check(s.stop() == 0, "exit 0")
    log = "\n".join(s.lines)
    bad = os.path.join(work, "bad.pw")
    with open(bad, "w") as f:
        f.write("not-the-password\n")
    # What Redis or the file answers stops start-up (exit 1); a flag's value
    # that is wrong in itself is refused before anything starts (exit 2).
    cases = [
        ("no password", ("--store", redis.url), 1, "requires a password"),
        ("a wrong password", ("--store", redis.url, "--store-password-file", bad), 1, "refused the password"),
        ("the password in the URL", ("--store", "redis://:%s@127.0.0.1:%d" % (secret, redis.port)), 2,
         "--store-password-file"),
        ("a missing password file", ("--store", redis.url, "--store-password-file", os.path.join(work, "none")),
         1, "No such file"),
        ("a password file for sqlite", ("--store-password-file", pw), 2, "is for a redis:// store"),
    ]
    for what, args, want, says in cases:
        rc, err = start_fails(work, "bad", *args)
        log += err
        check(rc == want and says in err,
              "%s: start-up stops (exit %d, want %d) saying %r: %s" % (what, rc, want, says, err.strip()[-200:]))
    check(secret not in log and "user-pw" not in log, "no password ever written to the log")


def case_orphans(work):
    """Files on the shared data dir that no job owns, older than
    --orphan-age, are swept (the first sweep starts at start-up, 500 names
    a janitor tick); a live job's files, young files and names that are
    not ORFEAS' stay. Node b's sweep
    takes files as 2 h older than they are (a file's ctime, which the
    sweep ages from too, cannot be set back), so a file made now is 2 h
    old to it and a young one has its mtime set 2 h ahead."""
    redis = Redis(work)
    img = make_image("png", 64, os.path.join(work, "star.png"))
    a = node(work, redis, "a", pause=False)
    done = submit(a, img)
    st = a.wait_job(done, timeout=20)
    check(st["status"] == "completed", "a job completed")
    check(a.stop() == 0, "exit 0")
    shared = os.path.join(work, "shared")
    old = time.time() - 7200
    lost_up = os.path.join(shared, "uploads", "%s.png" % uuid.uuid4())
    lost_tmp = os.path.join(shared, "outputs", "model_%s.stl.tmp" % uuid.uuid4())
    lost_model = os.path.join(shared, "outputs", "model_%s.glb" % uuid.uuid4())
    young = os.path.join(shared, "uploads", "%s.png" % uuid.uuid4())
    foreign = os.path.join(shared, "uploads", "README")
    foreign_tmp = os.path.join(shared, "outputs", "backup.tmp")
    for p in (lost_up, lost_tmp, lost_model, young, foreign, foreign_tmp):
        with open(p, "wb") as f:
            f.write(b"x" * 1000)
    for p in (lost_up, lost_tmp, lost_model, foreign, foreign_tmp):
        os.utime(p, (old, old))
    ahead = 7200
    os.utime(young, (time.time() + ahead, time.time() + ahead))
    # 1200 more young uploads: the sweep reads 500 names a janitor tick, so
    # outputs/ is reached only at its third tick or later (the folder's
    # stream kept open between ticks).
    for _ in range(1200):
        p = os.path.join(shared, "uploads", "%s.png" % uuid.uuid4())
        with open(p, "wb") as f:
            f.write(b"y")
        os.utime(p, (time.time() + ahead, time.time() + ahead))
    live = [os.path.join(shared, "uploads", n) for n in os.listdir(os.path.join(shared, "uploads"))
            if n.startswith(done)] + [os.path.join(shared, "outputs", st["output_file"])]
    for p in live:
        os.utime(p, (old, old))
    b = node(work, redis, "b", "--orphan-age", "3600", pause=False,
             env={"ORFEAS_TEST_ORPHAN_AHEAD_S": str(ahead)})
    check_within(lambda: metric(b, "orfeas_orphan_files_removed_total", dir="uploads") == 1 and
                 metric(b, "orfeas_orphan_files_removed_total", dir="outputs") == 2,
                 "the start-up sweep removed 1 upload and 2 outputs (a model and a .tmp)", timeout=10)
    gone = [p for p in (lost_up, lost_tmp, lost_model) if not os.path.exists(p)]
    check(len(gone) == 3, "the three old files no job owns are gone")
    check(all(os.path.exists(p) for p in [young, foreign, foreign_tmp] + live),
          "a young file, foreign names (a .tmp too) and the live job's upload and model stay")
    logged(lambda: b.log_has(r"orphans: removed 3 file\(s\) no job owns"), "the sweep is logged")
    st2, _, body = b.request("GET", st["download_url"])
    check(st2 == 200 and len(body) > 84, "the live job's model still downloads")


def case_partition(work):
    redis = Redis(work)
    img = make_image("png", 128, os.path.join(work, "star.png"))
    b = node(work, redis, "b")
    jid = submit(b, img)
    held_on(b, jid)
    b.proc.send_signal(signal.SIGSTOP)  # frozen: no renewals, no progress
    a = node(work, redis, "a", pause=False)
    st = a.wait_job(jid, timeout=20)
    check(st["status"] == "completed", "node a completed the job")
    logged(lambda: started(a, jid) == 1, "node a took it over (its log)")
    done = os.path.getmtime(os.path.join(work, "shared", "outputs", st["output_file"]))
    os.unlink(b.pause)
    b.proc.send_signal(signal.SIGCONT)
    check_within(lambda: metric(b, "orfeas_jobs_fenced_total") >= 1,
                 "thawed node b: orfeas_jobs_fenced_total >= 1 (its refused write)", timeout=15)
    # Its end comes after attempt 2's: refused as superseded (fenced), not
    # as a "busy" job (the stored state is checked after the attempt).
    logged(lambda: b.log_has(LOGGED + r"job %s: its completion was not recorded: this attempt of the job "
                             r"was superseded" % jid), "node b logs its dropped attempt as superseded")
    st2 = a.status(jid)
    check(st2["status"] == "completed" and st2 == st, "the job's record is attempt 2's, unchanged")
    ok_b = metric(b, "orfeas_generation_3d_total", format="stl", status="success")
    check(ok_b == 0, "node b counted no success for the superseded run")
    print("model mtime before/after thaw:", done,
          os.path.getmtime(os.path.join(work, "shared", "outputs", st["output_file"])))


# The gauges a node reads from the store (the janitor, every second): the
# cluster's figures with Redis. While the read fails they are not exposed,
# rather than frozen at their last value.
STORE_GAUGES = [("orfeas_queue_depth", {}), ("orfeas_active_jobs", {}), ("orfeas_store_oldest_queued_seconds", {}),
                ("orfeas_store_nodes", {}), ("orfeas_job_tombstones", {}), ("orfeas_store_bytes", {"kind": "uploads"}),
                ("orfeas_store_bytes", {"kind": "outputs"})]


def store_gauges_within(srv, up, want, what, timeout):
    """Waits for a scrape of srv with orfeas_store_up == up and, of
    STORE_GAUGES, none exposed (want None) or every one, with the values in
    want; a failure naming what the last scrape had."""
    seen = []

    def scrape():
        samples = parse_metrics(srv.metrics()[2])
        got = {n + "".join("{%s=%s}" % kv for kv in ls.items()): samples[(n, frozenset(ls.items()))]
               for n, ls in STORE_GAUGES if (n, frozenset(ls.items())) in samples}
        seen[:] = [(exposed(samples, "orfeas_store_up"), got)]
        if want is None:
            return seen[0][0] == up and not got
        return seen[0][0] == up and len(got) == len(STORE_GAUGES) and all(got[k] == v for k, v in want.items())
    try:
        check_within(scrape, what, timeout=timeout)
    except TestFailure:
        raise TestFailure("%s; the last scrape: orfeas_store_up %s, %r" % (what, seen[0][0], seen[0][1]))


def case_redis(work):
    redis = Redis(work)
    a = node(work, redis, "a")
    ids = [submit(a, make_image("png", 100 + 4 * i, os.path.join(work, "i%d.png" % i))) for i in range(3)]
    held_on(a, ids[0])  # one held running, two queued
    figures = {"orfeas_queue_depth": 2, "orfeas_active_jobs": 3, "orfeas_store_nodes": 1}
    store_gauges_within(a, 1, figures, "Redis up: the gauges read from the store are exposed: backlog 2, "
                        "3 active jobs, 1 node", 5)
    redis.kill9()
    # A dashboard must not show the last backlog as if it were current.
    store_gauges_within(a, 0, None, "Redis down: orfeas_store_up 0 and none of the gauges read from the store "
                        "exposed", 10)
    check_within(lambda: a.request("GET", "/ready")[0] == 503, "/ready 503 while Redis is down", timeout=10)
    st, _, body = a.json("GET", "/api/job-status/" + ids[1])
    check(st == 503, "job-status answers 503 while Redis is down (%d %r)" % (st, body))
    img = make_image("png", 90, os.path.join(work, "late.png"))
    st, _, body = a.upload(img)
    check(st == 503, "an upload answers 503 while Redis is down (%d)" % st)
    check_within(lambda: metric(a, "orfeas_store_up") == 0, "orfeas_store_up is 0", timeout=5)
    # /api/health cannot read the job figures: it says so, never "healthy"
    # with an empty queue and no jobs.
    st, _, h = a.json("GET", "/api/health")
    check(st == 200 and h["status"] == "degraded" and h["store"] == "down" and h["jobs"] is None and
          h["queue"]["depth"] is None and h["active_jobs"] is None,
          "/api/health while Redis is down: degraded, store down, no job figures (%r)" %
          {k: h.get(k) for k in ("status", "store", "jobs", "queue", "active_jobs")})
    check_within(lambda: a.log_has(r"job store: cannot connect to Redis at 127\.0\.0\.1:%d: .*the store is down"
                                   % redis.port), "the outage is logged with its reason", timeout=5)
    redis.start()  # same folder: the AOF brings every acknowledged write back
    wait_for(lambda: a.request("GET", "/ready")[0] == 200, "/ready to answer 200 again", timeout=10)
    check_within(lambda: a.log_has(r"job store: Redis at 127\.0\.0\.1:%d answers again" % redis.port),
                 "and its end", timeout=5)
    check(sum(1 for ln in list(a.lines) if "the store is down until" in ln) == 1,
          "the outage is logged once, not per retry")
    h = a.json("GET", "/api/health")[2]
    check(h["status"] == "healthy" and h["store"] == "ok" and h["active_jobs"] == 3 and h["jobs"]["queued"] == 2,
          "/api/health with Redis back: healthy, the cluster's 3 active jobs (2 queued)")
    store_gauges_within(a, 1, figures, "Redis back: the gauges read from the store are exposed again, "
                        "with the same figures", 5)
    os.unlink(a.pause)
    ends = [a.wait_job(jid, timeout=30)["status"] for jid in ids]
    check(ends == ["completed"] * 3,
          "all 3 accepted jobs (1 running, 2 queued at the crash) completed after Redis came back: %s" % ends)


def case_progress(work):
    redis = Redis(work)
    a = node(work, redis, "a", "--store-lease", "5")  # its one worker holds a decoy job
    decoy = submit(a, make_image("png", 64, os.path.join(work, "decoy.png")))
    held_on(a, decoy)
    # b has a much shorter lease (a node restarted with another
    # --store-lease): a claim lapses by its holder's lease, so b never takes
    # a's decoy over while a renews it (every 5/3 s; by b's own 0.5 s it
    # would look lapsed within one of a's renewals).
    b = node(work, redis, "b", "--store-lease", "0.5", pause=False)
    jid = submit(a, make_image("png", 3072, os.path.join(work, "big.png")))  # a few 100 ms

    def running_or_done():
        st = a.status(jid)
        if st.get("status") == "completed" or (st.get("status") == "processing" and st.get("progress", 0) > 0):
            return st
        return None
    st = wait_for(running_or_done, "node a to see the job run or end", timeout=30)
    check(st["status"] == "processing" and st["stage"] not in ("starting", "queued"),
          "node a's job-status of the job b runs: processing, stage %r, %.1f%%" % (st["stage"], st["progress"]))
    check(b.wait_job(jid, timeout=30)["status"] == "completed", "node b ran it to the end")
    logged(lambda: started(b, jid) == 1, "node b's log has its one start")
    holds(lambda: started(b, decoy) == 0 and a.status(decoy)["status"] == "processing",
          "node a keeps its decoy, renewed, while node b (lease 0.5 s) is idle", 2.5)
    check(metric(b, "orfeas_jobs_reclaimed_total", reason="lease_expired") == 0,
          "node b took nothing over (orfeas_jobs_reclaimed_total{reason=\"lease_expired\"} 0)")


def case_ratelimit(work):
    redis = Redis(work)
    # 0.05/s: a token back every 20 s, so none returns during the case.
    a, b = (node(work, redis, n, "--rate-limit", "0.05", "--rate-burst", "3", pause=False) for n in ("a", "b"))
    path = "/api/job-status/00000000-0000-4000-8000-000000000001"
    got = [srv.request("GET", path)[0] for srv in (a, a, b)]
    check(got == [404, 404, 404], "3 requests (the burst) over nodes a, a, b: served (%s)" % got)
    st, hd, _ = b.request("GET", path)
    check(st == 429 and int(hd.get("retry-after", "0")) >= 1,
          "the 4th, on node b, gets 429 with Retry-After (%d, %s)" % (st, hd.get("retry-after")))
    st, _, _ = a.request("GET", path)
    check(st == 429, "and so does the 5th, on node a (%d)" % st)
    check(metric(b, "orfeas_rate_limit_rejections_total", endpoint="/api/job-status/{job_id}") == 1,
          "node b counted its rejection")


def case_refreshes(work):
    """A late subscribe is answered whatever another client does: with Redis
    frozen (SIGSTOP) the refresher waits on its first read, and one client
    subscribes and unsubscribes one job 2000 times; a second client then
    subscribes to a finished job. Once Redis runs again it hears that job's
    end, and no refresh was refused (each job waits in the refresh queue
    once: before, the loop filled its 1024 places and the second subscribe
    was dropped)."""
    redis = Redis(work)
    a = node(work, redis, "a", pause=False)
    img = make_image("png", 64, os.path.join(work, "star.png"))
    done = submit(a, img)
    check(a.wait_job(done, timeout=20)["status"] == "completed", "a job completed")
    other = a.upload(img)[2]["job_id"]
    looper, late = WS(a.port), WS(a.port)
    looper.recv_event()
    late.recv_event()
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        # 2000 rounds, 50 at a time, the replies read between batches (a
        # client that reads is no flood).
        for _ in range(40):
            for _ in range(50):
                looper.send_json({"event": "subscribe", "data": {"job_id": other}})
                looper.send_json({"event": "unsubscribe", "data": {"job_id": other}})
            got = 0
            while got < 100:
                ev = looper.recv_event(timeout=20)
                check(ev is not None, "the looping client stays connected")
                got += ev["event"] in ("subscribed", "unsubscribed")
        late.send_json({"event": "subscribe", "data": {"job_id": done}})
        late.events_until(lambda ev: ev["event"] == "subscribed", timeout=10)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    # On a loaded machine the late subscribe's read can start while Redis is
    # still frozen and fail past the 2 s timeout: it is then told to
    # subscribe again (reason "store", not a refusal), and does, as a
    # client would. At most 3 times: Redis runs again by now.
    seen = []
    for _ in range(3):
        evs, _ = late.events_until(lambda ev: ev["event"] == "generation_complete" or
                                   (resubscribe(ev) and ev["data"].get("job_id") == done), timeout=20)
        seen += [e["event"] for e in evs]
        if not evs or evs[-1]["event"] != "error":
            break
        late.send_json({"event": "subscribe", "data": {"job_id": done}})
    check(evs and evs[-1]["event"] == "generation_complete",
          "the late subscriber heard its finished job's end (%s)" % seen)
    check(metric(a, "orfeas_websocket_refreshes_refused_total", reason="client") == 0
          and metric(a, "orfeas_websocket_refreshes_refused_total", reason="full") == 0, "no refresh refused")
    looper.close()
    late.close()


AGAIN = "subscribe again"  # in every refusal of a job's current state


def resubscribe(ev):
    """An error event telling the client to subscribe again: its code
    (docs/api.md), and the message older clients match."""
    return ev["event"] == "error" and ev["data"].get("code") == "resubscribe" \
        and AGAIN in ev["data"].get("message", "")


def subscribe_all(ws, ids, unsubscribe):
    """Sends a subscribe (and its unsubscribe) for each id, 50 at a time,
    then a ping, and reads the replies up to its pong before the next batch
    (a client that reads is no flood); returns the ids whose current state
    was refused ("error" naming the job and saying to subscribe again).
    A read that was made and failed (Redis frozen past the 2 s timeout:
    reason "store", its message naming the job store) is not a refusal:
    on a loaded machine one can reach a client still in its batches."""
    refused, other = [], []
    for at in range(0, len(ids), 50):
        batch = ids[at:at + 50]
        for jid in batch:
            ws.send_json({"event": "subscribe", "data": {"job_id": jid}})
            if unsubscribe:
                ws.send_json({"event": "unsubscribe", "data": {"job_id": jid}})
        ws.send_json({"event": "ping"})
        while True:
            ev = ws.recv_event(timeout=20)
            if ev is None:
                raise TestFailure("the subscribing client was closed (%s %s)" % (ws.close_code, ws.close_reason))
            if ev["event"] == "pong":
                break
            if resubscribe(ev) and "job store" in ev["data"]["message"]:
                continue
            if resubscribe(ev) and ev["data"].get("job_id") in batch:
                refused.append(ev["data"]["job_id"])
            elif ev["event"] not in ("subscribed", "unsubscribed"):
                other.append(ev)
    check(not other, "only replies and refusals that name their job came (others: %r)" % other[:3])
    return refused


def sio_until(ws, prefix, timeout=10):
    """The next Socket.IO frame that starts with prefix, answering pings
    ("2") on the way; a failure when none came within the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            op, payload = ws.recv_frame(max(0.01, deadline - time.monotonic()))
        except socket.timeout:
            raise TestFailure("no Socket.IO frame %r within %d s" % (prefix, timeout))
        text = payload.decode() if op == 1 else ""
        if text == "2":
            ws.send_frame(1, b"3")
        elif text.startswith(prefix):
            return text


def end_of(ws, jid, timeout):
    """Waits for jid's end on ws; the events seen, or a failure."""
    try:
        evs, closed = ws.events_until(lambda ev: ev["event"] in ("generation_complete", "generation_error")
                                      and ev["data"].get("job_id") == jid, timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise TestFailure("no end of job %s within %d s" % (jid, timeout))
    check(not closed and evs[-1]["event"] == "generation_complete",
          "job %s's generation_complete (%s)" % (jid, [e["event"] for e in evs]))
    return evs


def case_churn(work):
    """A hostile client cannot starve the others' refreshes. With Redis
    frozen (SIGSTOP: the refresher waits on its read) one client subscribes
    to 2000 distinct random ids and unsubscribes each at once. At most
    --ws-max-subscriptions (32) of its refreshes wait at a time; each one
    past that is refused with an "error" naming the job (subscribe again),
    counted in orfeas_websocket_refreshes_refused_total{reason="client"}. A
    second client then subscribes to a job that already completed and,
    Redis thawed, hears its end. (Before, the churn filled the refresher's
    1024 places and the late subscribe was dropped in silence.) Then the
    queue full: 34 clients subscribe to 32 new ids each (1088 refreshes),
    so the last ones, the late client's subscribe and a Socket.IO
    client's are refused (reason="full"), each told so, and the late
    client's subscribe again, once the queue drained, brings the job's
    end."""
    redis = Redis(work)
    a = node(work, redis, "a", pause=False)
    img = make_image("png", 64, os.path.join(work, "star.png"))
    done = submit(a, img)
    check(a.wait_job(done, timeout=20)["status"] == "completed", "a job completed")
    hostile, late = WS(a.port), WS(a.port)
    hostile.recv_event()
    late.recv_event()
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        churned = [str(uuid.uuid4()) for _ in range(2000)]
        refused = subscribe_all(hostile, churned, unsubscribe=True)
        late.send_json({"event": "subscribe", "data": {"job_id": done}})
        evs, _ = late.events_until(lambda ev: ev["event"] in ("subscribed", "error"), timeout=10)
        check(evs[-1]["event"] == "subscribed", "the late subscribe was taken (%r)" % evs[-1])
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    end_of(late, done, 20)
    # 32 wait; the refresher took one or two more meanwhile (a SIGSTOP
    # lands a moment late, then each read waits 2 s for the frozen Redis).
    check(len(refused) >= 2000 - 32 - 4, "the churning client's refreshes past its 32 were refused (%d of 2000)"
          % len(refused))
    check(metric(a, "orfeas_websocket_refreshes_refused_total", reason="client") == len(refused),
          "each refusal the churning client heard was counted (reason client: %d)" % len(refused))
    check(metric(a, "orfeas_websocket_refreshes_refused_total", reason="full") == 0, "none for a full queue")
    hostile.close()

    # The queue full: every refused refresh is told, the late client's too.
    crowd = [WS(a.port) for _ in range(34)]
    for ws in crowd:
        ws.recv_event()
    sio = WS(a.port, path="/socket.io/?EIO=4&transport=websocket")
    sio_until(sio, "0{")
    sio.send_frame(1, b"40")
    sio_until(sio, '42["connected"')
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        full = sum(len(subscribe_all(ws, [str(uuid.uuid4()) for _ in range(32)], unsubscribe=False))
                   for ws in crowd)
        check(full >= 34 * 32 - 1024 - 4, "refreshes past the queue's 1024 places were refused (%d)" % full)
        late.send_json({"event": "subscribe", "data": {"job_id": done}})
        evs, _ = late.events_until(lambda ev: ev["event"] == "error", timeout=10)
        check(evs[-1]["data"].get("job_id") == done and resubscribe(evs[-1]),
              "the late subscribe to a full queue was answered: subscribe again (%r)" % evs[-1])
        sio.send_frame(1, ('42["subscribe_job",{"job_id":"%s"}]' % done).encode())
        got = json.loads(sio_until(sio, '42["error"')[2:])[1]
        check(got.get("job_id") == done and AGAIN in got.get("message", "") and got.get("code") == "resubscribe",
              "so was a Socket.IO client's, with its error event (%r)" % got)
        full += 2
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    counted = metric(a, "orfeas_websocket_refreshes_refused_total", reason="full")
    check(counted == full, "each refusal for a full queue was counted (%d heard, %d counted)" % (full, counted))

    def again():  # what a client told to subscribe again does
        late.send_json({"event": "subscribe", "data": {"job_id": done}})
        try:
            evs, closed = late.events_until(lambda ev: ev["event"] in ("error", "generation_complete"), timeout=10)
        except socket.timeout:
            return False
        check(not closed, "the late client stays connected")
        return evs[-1]["event"] == "generation_complete"
    wait_for(again, "the late client's subscribe again to bring the job's end", timeout=20)
    for ws in crowd + [sio]:
        ws.close()
    late.close()


def told_again(ws, jid, timeout=10):
    """Waits on a /ws client for the end of jid or an error naming it; the
    error's data, or a failure (the end came, or nothing did)."""
    try:
        evs, closed = ws.events_until(lambda ev: ev["event"] in ("error", "generation_complete", "generation_error")
                                      and ev["data"].get("job_id") == jid, timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise TestFailure("neither an error nor the end of job %s within %d s" % (jid, timeout))
    check(not closed and resubscribe(evs[-1]),
          "job %s: told to subscribe again (%r)" % (jid, evs[-1] if evs else None))
    return evs[-1]["data"]


def case_storefail(work):
    """A subscribe whose read of its job's current state fails is told so,
    and counted. Redis frozen (SIGSTOP: the read waits out the 2 s command
    timeout), a /ws client and a Socket.IO client subscribe to two jobs that
    already completed: each gets an error naming its job (subscribe again),
    counted in orfeas_websocket_refreshes_refused_total{reason="store"};
    Redis thawed, a subscribe again brings each job's end. Then Redis
    answering the node's scripts with an error (an ACL that denies the
    node's user EVALSHA and EVAL): the same. (Before, the failed read was
    dropped in silence, and a subscriber to a job that had ended waited for
    its end for ever.)"""
    redis = Redis(work)
    a = node(work, redis, "a", pause=False)
    done = [submit(a, make_image("png", 64 + 8 * i, os.path.join(work, "star%d.png" % i))) for i in range(2)]
    for jid in done:
        check(a.wait_job(jid, timeout=20)["status"] == "completed", "job %s completed" % jid)
    ws = WS(a.port)
    ws.recv_event()
    sio = WS(a.port, path="/socket.io/?EIO=4&transport=websocket")
    sio_until(sio, "0{")
    sio.send_frame(1, b"40")
    sio_until(sio, '42["connected"')
    check(metric(a, "orfeas_websocket_refreshes_refused_total", reason="store") == 0, "none refused yet")

    redis.proc.send_signal(signal.SIGSTOP)
    try:
        ws.send_json({"event": "subscribe", "data": {"job_id": done[0]}})
        told_again(ws, done[0])
        sio.send_frame(1, ('42["subscribe_job",{"job_id":"%s"}]' % done[1]).encode())
        got = json.loads(sio_until(sio, '42["error"')[2:])[1]
        check(got.get("job_id") == done[1] and AGAIN in got.get("message", "") and got.get("code") == "resubscribe",
              "a Socket.IO client too, with its error event (%r)" % got)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    # At least: a resync while Redis was frozen (the listener's connection
    # given up and made again) would read both jobs again, and fail again.
    stored = metric(a, "orfeas_websocket_refreshes_refused_total", reason="store")
    check(stored >= 2, "each failed read counted (reason store: %g)" % stored)
    ws.send_json({"event": "subscribe", "data": {"job_id": done[0]}})
    end_of(ws, done[0], 10)
    sio.send_frame(1, ('42["subscribe_job",{"job_id":"%s"}]' % done[1]).encode())
    got = json.loads(sio_until(sio, '42["job_update"')[2:])[1]
    check(got.get("job_id") == done[1] and got.get("status") == "completed",
          "the Socket.IO client's subscribe again brings its job's end (%r)" % got)

    # Redis answers an error: the read fails at once, told the same way.
    check(redis.cli("ACL", "SETUSER", "default", "-evalsha", "-eval") == "OK", "EVALSHA and EVAL denied")
    try:
        ws.send_json({"event": "subscribe", "data": {"job_id": done[0]}})
        told_again(ws, done[0])
    finally:
        check(redis.cli("ACL", "SETUSER", "default", "+@all") == "OK", "every command allowed again")
    now = metric(a, "orfeas_websocket_refreshes_refused_total", reason="store")
    check(now >= stored + 1, "the failed read counted (reason store: %g after %g)" % (now, stored))
    wait_for(lambda: a.request("GET", "/ready")[0] == 200, "/ready to answer 200 again", timeout=10)
    ws.send_json({"event": "subscribe", "data": {"job_id": done[0]}})
    end_of(ws, done[0], 10)
    check(metric(a, "orfeas_websocket_refreshes_refused_total", reason="client") == 0
          and metric(a, "orfeas_websocket_refreshes_refused_total", reason="full") == 0,
          "none refused for another reason")
    ws.close()
    sio.close()


def case_emptydir(work):
    redis = Redis(work)
    a = node(work, redis, "a", pause=False)
    jid = submit(a, make_image("png", 96, os.path.join(work, "star.png")))
    st = a.wait_job(jid, timeout=20)
    check(st["status"] == "completed", "node a completed a job")
    # Node e's data dir is not the shared one (an unmounted mount point).
    e = Server(os.path.join(work, "not-mounted"), "--store", redis.url, "--node-id", "e", "--workers", "1",
               "--store-lease", LEASE)
    e.name = "e"
    check(a.status(jid) == st and e.status(jid)["status"] == "completed",
          "the job is still completed, unchanged, on node a (and on node e)")
    logged(lambda: e.log_has(r"start-up: 1 completed job\(s\) of the shared store have no model file in "
                             r".*not-mounted/outputs \(%s, \.\.\.\): left completed" % st["output_file"]),
           "node e logged the missing model once, with the count")
    check(not e.log_has(r"job %s: its model file" % jid), "node e failed no job")
    got, _, data = a.request("GET", st["download_url"])
    check(got == 200 and len(data) > 84, "its model still downloads from node a")


def case_lostreply(work):
    redis = Redis(work)
    lost = os.path.join(work, "lost")
    a = node(work, redis, "a", env={"ORFEAS_TEST_LOST_REPLY_FILE": lost})
    b = node(work, redis, "b", pause=False)
    jid = submit(a, make_image("png", 96, os.path.join(work, "star.png")))
    held_on(a, jid)
    clients = {}
    for s in (a, b):
        ws = WS(s.port)
        ws.recv_event()
        ws.send_json({"event": "subscribe", "data": {"job_id": jid}})
        clients[s.name] = ws
    open(lost, "w").close()  # from now on a's end is made but answers DOWN
    os.unlink(a.pause)
    # Its completion, then the failure retried in its place, both made by
    # Redis (the failure refused: the job is completed) and both "lost".
    logged(lambda: a.log_has(r"job %s: its failure was not recorded" % jid),
           "node a retried the end as a failure after its completion got no answer")
    check(a.status(jid)["status"] == "completed", "the completion is in the store")
    os.unlink(lost)
    for name, ws in clients.items():
        try:
            got, _ = ws.events_until(lambda ev: ev["event"] in ("generation_complete", "generation_error"),
                                     timeout=10)
        except TimeoutError:
            raise TestFailure("the client on node %s got no end of the job within 10 s" % name)
        check(got and got[-1]["event"] == "generation_complete",
              "the client on node %s got generation_complete" % name)
        ws.close()
    logged(lambda: a.log_has(r"job %s: its end was recorded by an earlier write whose answer the store lost: "
                             r"completed" % jid), "node a logged why it sent the end late")
    check(metric(a, "orfeas_generation_3d_total", format="stl", status="success") == 1,
          "node a counted the success")
    st = b.wait_job(jid, timeout=5)
    got, _, data = b.request("GET", st["download_url"])
    check(st["status"] == "completed" and got == 200 and len(data) > 84, "the model downloads from node b")


if __name__ == "__main__":
    main({"once": case_once, "kill9": case_kill9, "drain": case_drain, "auth": case_auth, "orphans": case_orphans, "partition": case_partition, "redis": case_redis,
          "progress": case_progress, "ratelimit": case_ratelimit, "stranded": case_stranded,
          "emptydir": case_emptydir, "lostreply": case_lostreply, "refreshes": case_refreshes,
          "churn": case_churn, "storefail": case_storefail})
