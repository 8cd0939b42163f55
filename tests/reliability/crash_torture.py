#!/usr/bin/python3
"""crash_torture: kill -9 at random moments, against a ledger of every 2xx.

docs/api.md ("Restarts and retention") promises that with the default store
a 2xx survives kill -9. durable_test.py kills at chosen states; this script
kills wherever a seeded RNG says, many times over, and checks after each
restart on the same data dir:

  - every job whose upload got 200 is known (a state, or 410 with the
    reason); every job whose generate got 202 ends completed, or failed
    with a reason (the only reason a valid image may fail with here is the
    --max-attempts one); a job removed for space was finished or unused
    when removed (its log line says the state);
  - a job seen finished (job-status, the 202 of a cache hit, a WebSocket
    generation_complete/generation_error) is still so after the restart;
  - a model downloaded before the crash downloads byte-identical; one not
    downloaded before is a whole file of its format; all models of the same
    image and parameters are byte-identical (the pipeline is deterministic,
    so a cache hit that served another result would show);
  - after start-up (workers held by --pause-file, so nothing is being
    written): no .tmp in uploads/ or outputs/, no body file in tmp/, every
    file under a final name is whole (models parse, uploads are byte-equal
    to an image a client sent), every file belongs to a job that answers,
    uploads/ + outputs/ within --max-store-mb;
  - the result cache: every complete pair (<key>.meta and a <key>.bin of
    its length) seen right after the kill is adopted again (still there).

Each cycle is one of: "plain" (kill at a time drawn uniformly over the busy
window), "evict" (kill on the first "removed (space" log line, i.e. while
the disk budget evicts), "startup" (the plain kill, then one or two more
kill -9 within the first few hundred ms of the restart, during recovery).
Clients: --clients threads, each uploading (distinct noise PNGs, some
repeated to hit the memo and the cache), generating (once per job),
polling job-status, downloading, and following its jobs on a WebSocket.

  crash_torture.py [--cycles K] [--seed S] [--work DIR] [--minutes M]
                   [--fresh-every N] [--short]

ORFEASD_BIN picks the binary (build/tests/orfeasd_asan under ASan: then a
sanitizer report in any run's log is a failure). Exit 0 when no violation
was found, 1 otherwise; the seed is printed first so a failure can be
replayed (the kill moments depend on the seed, the interleaving on the
machine).
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "service"))
from odlib import ORFEASD, SANITIZER_RE, WS, multipart, noise_png  # noqa: E402

FORMATS = ("stl", "glb", "ply", "obj")
QUALITIES = (1, 1, 2, 3, 5)
DIMS = (None, {"width": 50, "height": 70, "depth": 5})
ATTEMPTS_RE = re.compile(r"stopped \d+ times while this job ran")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sha(b):
    return hashlib.sha256(b).hexdigest()


# ---- model validators (the structure od_test.validate_model checks, whole)

def _ply_ok(data):
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\nformat binary_little_endian 1.0\n") or end < 0:
        return False
    sizes = {"char": 1, "uchar": 1, "short": 2, "ushort": 2, "int": 4, "uint": 4, "float": 4, "double": 8}
    want, elems = end + len(b"end_header\n"), []
    for ln in data[:end].decode("ascii", "replace").splitlines():
        p = ln.split()
        if p[:1] == ["element"]:
            elems.append([p[1], int(p[2]), 0, None])
        elif p[:1] == ["property"] and elems:
            if p[1] == "list":
                elems[-1][3] = (sizes[p[2]], sizes[p[3]])
            else:
                elems[-1][2] += sizes[p[1]]
    off = want
    for name, n, fixed, lst in elems:
        if lst is None:
            off += n * fixed
        else:  # a list per element: walk it
            for _ in range(n):
                if off + lst[0] > len(data):
                    return False
                k = int.from_bytes(data[off:off + lst[0]], "little")
                off += lst[0] + k * lst[1] + fixed
    return off == len(data) and all(e[1] > 0 for e in elems)


def _glb_ok(data):
    if len(data) < 20:
        return False
    magic, ver, length = struct.unpack("<4sII", data[:12])
    if magic != b"glTF" or ver != 2 or length != len(data):
        return False
    off = 12
    n = 0
    while off < len(data):
        if off + 8 > len(data):
            return False
        clen, kind = struct.unpack("<I4s", data[off:off + 8])
        if off + 8 + clen > len(data):
            return False
        if n == 0:
            if kind != b"JSON":
                return False
            try:
                json.loads(data[off + 8:off + 8 + clen])
            except ValueError:
                return False
        off += 8 + clen
        n += 1
    return off == len(data) and n >= 2


def _obj_ok(data):
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return False
    if not text.endswith("\n"):
        return False
    nv = nf = 0
    for ln in text.splitlines():
        if ln.startswith("v "):
            nv += 1
        elif ln.startswith("f "):
            nf += 1
            for ref in ln.split()[1:]:
                i = int(ref.split("/")[0])
                if not 1 <= i <= nv and not -nv <= i <= -1:
                    return False
    return nv > 0 and nf > 0


def model_ok(fmt, data):
    try:
        if fmt == "stl":
            return len(data) >= 84 and 0 < struct.unpack("<I", data[80:84])[0] and \
                len(data) == 84 + 50 * struct.unpack("<I", data[80:84])[0]
        if fmt == "glb":
            return _glb_ok(data)
        if fmt == "ply":
            return _ply_ok(data)
        if fmt == "obj":
            return _obj_ok(data)
    except (ValueError, KeyError, IndexError, struct.error):
        return False
    return False


# ---- the server, started and killed by PID

class Proc:
    def __init__(self, binary, data, args, env):
        self.lines = []
        self.port = None
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data] + args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.on_line = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            ln = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(ln)
            if self.port is None:
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", ln)
                if m:
                    self.port = int(m.group(1))
            cb = self.on_line
            if cb:
                cb(ln)

    def wait_listening(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError("orfeasd exited at start-up (rc %s):\n%s" %
                                   (self.proc.returncode, "\n".join(self.lines[-30:])))
            if time.monotonic() > deadline:
                raise RuntimeError("orfeasd did not listen within %ds" % timeout)
            time.sleep(0.01)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=10)

    def term(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return "no exit within %ds of SIGTERM" % timeout
        self.reader.join(timeout=10)
        return rc


def req(port, method, path, body=None, headers=None, timeout=20):
    """(status, headers, body), or None when the connection failed (the
    server died): no answer, no promise."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def req_json(port, method, path, obj=None, headers=None):
    h = dict(headers or {})
    body = None
    if obj is not None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj)
        h.setdefault("Content-Type", "application/json")
    r = req(port, method, path, body, h)
    if r is None:
        return None
    try:
        return r[0], r[1], json.loads(r[2])
    except ValueError:
        return r[0], r[1], {"_raw": r[2][:200]}


# ---- the ledger: what every 2xx promised

class Job:
    def __init__(self, jid, img):
        self.id, self.img = jid, img
        self.params = None      # (fmt, quality, dims json) sent with its one generate
        self.generated = False  # the generate got 202
        self.done = None        # "completed"/"failed" seen (status, 202 cached, WebSocket)
        self.error = None       # the reason of a failure seen
        self.model = None       # sha of the model downloaded
        self.where = ""         # where the promise came from, for the report


class Ledger:
    def __init__(self):
        self.mu = threading.Lock()
        self.jobs = {}
        self.by_key = {}  # (img sha, params) -> model sha
        self.violations = []
        self.watch = []  # job ids whose log lines the report shows
        self.notes = []

    def violation(self, cycle, what):
        with self.mu:
            self.violations.append("cycle %d: %s" % (cycle, what))
        print("VIOLATION (cycle %d): %s" % (cycle, what), flush=True)

    def note(self, what):
        with self.mu:
            self.notes.append(what)

    def saw_model(self, cycle, job, data):
        """A model served for job: whole, and the same as every other model
        of its image and parameters."""
        h = sha(data)
        fmt = job.params[0]
        if not model_ok(fmt, data):
            self.violation(cycle, "job %s: its %s model (%d bytes) is not a whole file" % (job.id, fmt, len(data)))
        with self.mu:
            if job.model is not None and job.model != h:
                bad = "job %s: its model changed (%s -> %s, %d bytes)" % (job.id, job.model[:12], h[:12], len(data))
            else:
                bad = None
                job.model = h
            k = (job.img, job.params)
            other = self.by_key.setdefault(k, h)
        if bad:
            self.violation(cycle, bad)
        if other != h:
            self.violation(cycle, "job %s: model %s differs from another model of the same image and "
                           "parameters (%s)" % (job.id, h[:12], other[:12]))


# ---- clients

class Client(threading.Thread):
    def __init__(self, port, ledger, images, rnd, stop, cycle):
        super().__init__(daemon=True)
        self.port, self.ledger, self.images, self.rnd, self.stop, self.cycle = port, ledger, images, rnd, stop, cycle
        self.mine = []
        self.ws = None
        self.wst = None
        self.counts = {}

    def count(self, k):
        self.counts[k] = self.counts.get(k, 0) + 1

    def ws_reader(self):
        try:
            while not self.stop.is_set():
                try:
                    ev = self.ws.recv_event(timeout=1)
                except socket.timeout:
                    continue
                if ev is None:
                    return
                d = ev.get("data") or {}
                job = self.ledger.jobs.get(d.get("job_id"))
                if job is None:
                    continue
                if ev["event"] == "generation_complete":
                    job.done, job.where = "completed", "WebSocket generation_complete"
                    self.count("ws_complete")
                elif ev["event"] == "generation_error" and "removed" not in (d.get("error") or ""):
                    job.done, job.error, job.where = "failed", d.get("error"), "WebSocket generation_error"
                    self.count("ws_error")
        except (OSError, EOFError, ValueError, struct.error):
            return

    def run(self):
        try:
            self.ws = WS(self.port, timeout=5)
            self.ws.recv_event(timeout=5)  # connected
            self.wst = threading.Thread(target=self.ws_reader, daemon=True)
            self.wst.start()
        except Exception:  # no WebSocket this cycle (the server died first)
            self.ws = None
        while not self.stop.is_set():
            try:
                self.step()
            except (OSError, EOFError, ValueError, KeyError, TypeError):
                pass
            time.sleep(self.rnd.uniform(0, 0.01))
        if self.ws:
            try:
                self.ws.sock.close()
            except OSError:
                pass

    def step(self):
        r = self.rnd.random()
        fresh = [j for j in self.mine if j.params is None]
        pending = [j for j in self.mine if j.generated and j.done is None]
        undl = [j for j in self.mine if j.done == "completed" and j.model is None]
        if r < 0.3 or not self.mine:
            self.upload()
        elif r < 0.6 and fresh:
            self.generate(self.rnd.choice(fresh))
        elif r < 0.8 and pending:
            self.poll(self.rnd.choice(pending))
        elif undl:
            self.download(self.rnd.choice(undl))
        elif pending:
            self.poll(self.rnd.choice(pending))
        else:
            self.upload()

    def upload(self):
        # Mostly from a small recent window, so images repeat (memo, cache).
        i = self.rnd.randrange(len(self.images))
        img = self.images[i]
        body, ct = multipart({"image": ("t%d.png" % i, img)})
        r = req_json(self.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
        if r is None:
            return
        self.count("upload_%d" % r[0])
        if r[0] == 200:
            job = Job(r[2]["job_id"], sha(img))
            job.where = "upload 200"
            with self.ledger.mu:
                self.ledger.jobs[job.id] = job
            self.mine.append(job)
            if self.ws:
                try:
                    self.ws.send_json({"event": "subscribe", "data": {"job_id": job.id}})
                except OSError:
                    self.ws = None

    def generate(self, job):
        fmt, q, dims = self.rnd.choice(FORMATS), self.rnd.choice(QUALITIES), self.rnd.choice(DIMS)
        body = {"job_id": job.id, "format": fmt, "quality": q}
        if dims:
            body["dimensions"] = dims
        job.params = (fmt, q, json.dumps(dims, sort_keys=True))
        r = req_json(self.port, "POST", "/api/generate-3d", body)
        if r is None:
            return
        self.count("generate_%d" % r[0])
        if r[0] == 404:  # a job that got its 200: known, or removed (410), never unknown
            js = req_json(self.port, "GET", "/api/job-status/" + job.id)
            self.ledger.violation(self.cycle, "generate-3d of job %s (upload 200 in this run) answered 404: %s; "
                                  "job-status then: %s" % (job.id, r[2], js[:3:2] if js else None))
            self.ledger.watch.append(job.id)
        if r[0] == 429:
            job.params = None  # stays uploaded: may be generated again
        if r[0] == 202:
            job.generated = True
            job.where = "generate 202"
            if r[2].get("status") == "completed":
                job.done, job.where = "completed", "generate 202 completed (cache hit)"
                self.count("cache_hit")

    def poll(self, job):
        r = req_json(self.port, "GET", "/api/job-status/" + job.id)
        if r is None or r[0] != 200:
            return
        st = r[2].get("status")
        if st in ("completed", "failed"):
            job.done, job.where = st, "job-status %s" % st
            if st == "failed":
                job.error = r[2].get("error")

    def download(self, job):
        r = req_json(self.port, "GET", "/api/job-status/" + job.id)
        if r is None or r[0] != 200 or r[2].get("status") != "completed":
            return
        d = req(self.port, "GET", r[2]["download_url"])
        if d is None or d[0] != 200:
            return
        self.count("download")
        self.ledger.saw_model(self.cycle, job, d[2])


# ---- checks after a restart

def data_listing(data):
    out = {}
    for sub in ("uploads", "outputs", "tmp"):
        p = os.path.join(data, sub)
        if os.path.isdir(p):
            for n in os.listdir(p):
                out[os.path.join(sub, n)] = os.path.getsize(os.path.join(p, n))
    return out


def cache_pairs(data):
    """Keys whose .meta parses and whose .bin has its length."""
    d = os.path.join(data, "cache")
    out = set()
    if not os.path.isdir(d):
        return out
    for n in os.listdir(d):
        if len(n) == 69 and n.endswith(".meta"):
            try:
                with open(os.path.join(d, n), "rb") as f:
                    v = f.read()
                if len(v) == 32 and v[:4] == b"OQ2\0":
                    want = struct.unpack("<Q", v[4:12])[0]
                    if os.path.getsize(os.path.join(d, n[:64] + ".bin")) == want:
                        out.add(n[:64])
            except OSError:
                pass
    return out


def check_disk(cycle, led, srv, data, cap, images_by_sha, pairs_before):
    files = data_listing(data)
    for p in files:
        if p.endswith(".tmp"):
            led.violation(cycle, "after start-up %s is left (temporary files are swept at start)" % p)
        if p.startswith("tmp/"):
            led.violation(cycle, "after start-up the body file %s is left" % p)
    used = sum(v for p, v in files.items() if not p.startswith("tmp/"))
    if used > cap:
        m = req(srv.port, "GET", "/metrics")
        stored = [ln for ln in (m[2].decode().splitlines() if m else []) if ln.startswith("orfeas_store_bytes")]
        rows = []
        for p, v in sorted(files.items()):
            u = UUID_RE.search(p)
            r = req_json(srv.port, "GET", "/api/job-status/" + u.group(0)) if u else None
            rows.append("%s %d %s" % (p, v, (r[0], r[2].get("status")) if r else "-"))
        led.violation(cycle, "after start-up uploads/ + outputs/ hold %d bytes, over --max-store-mb (%d); "
                      "orfeasd counts %s; start-up said %s; the files:\n    %s" %
                      (used, cap, stored, [ln for ln in srv.lines if "start-up" in ln], "\n    ".join(rows)))
    status_of = {}

    def status(jid):
        if jid not in status_of:
            r = req_json(srv.port, "GET", "/api/job-status/" + jid)
            status_of[jid] = (r[0], r[2].get("status")) if r else (None, None)
        return status_of[jid]

    for p in files:
        if p.startswith("tmp/") or p.endswith(".tmp"):
            continue
        m = UUID_RE.search(p)
        if not m:
            continue
        code, st = status(m.group(0))
        path = os.path.join(data, p)
        with open(path, "rb") as f:
            body = f.read()
        if p.startswith("uploads/"):
            if code != 200:
                led.violation(cycle, "%s: no job owns it (job-status %s): not removed at start" % (p, code))
            if sha(body) not in images_by_sha:
                led.violation(cycle, "%s (%d bytes) is not an image a client sent: half written?" % (p, len(body)))
        else:
            if code != 200 or st != "completed":
                led.violation(cycle, "%s: its job answers %s %s, not completed: not removed at start" % (p, code, st))
            fmt = p.rsplit(".", 1)[-1]
            if not model_ok(fmt, body):
                led.violation(cycle, "%s (%d bytes) is not a whole %s file" % (p, len(body), fmt))
    after = cache_pairs(data)
    lost = pairs_before - after
    if lost:
        led.violation(cycle, "the result cache lost %d complete entr(y/ies) across the restart: %s" %
                      (len(lost), sorted(k[:12] for k in lost)))


def sample_store(port, cap, stop, led, cycle):
    """orfeasd's own count of uploads + models (orfeas_store_bytes, what
    --max-store-mb bounds; committed files only) while the clients run."""
    worst = 0
    while not stop.wait(0.05):
        r = req(port, "GET", "/metrics", timeout=5)
        if r is None or r[0] != 200:
            continue
        n = 0
        for ln in r[2].decode().splitlines():
            if ln.startswith('orfeas_store_bytes{kind="uploads"}') or ln.startswith('orfeas_store_bytes{kind="outputs"}'):
                n += int(float(ln.split()[-1]))
        if n > cap and n > worst:
            worst = n
    if worst:
        led.violation(cycle, "while running, orfeas_store_bytes{uploads+outputs} reached %d, over --max-store-mb "
                      "(%d)" % (worst, cap))


def removal_state(logs, jid):
    for ln in logs:
        m = re.search(r"job %s removed \((\w+), state (\w+)\)" % jid, ln)
        if m:
            return m.group(1), m.group(2)
    return None


def check_ledger(cycle, led, srv, all_logs, deadline_s):
    """Every promise against the restarted (unpaused) server."""
    deadline = time.monotonic() + deadline_s
    jobs = list(led.jobs.values())
    for job in jobs:
        while True:
            r = req_json(srv.port, "GET", "/api/job-status/" + job.id)
            if r is None:
                led.violation(cycle, "job-status %s: no answer from the restarted orfeasd" % job.id)
                return
            code, body = r[0], r[2]
            st = body.get("status")
            if code == 200 and job.params is not None and st in ("queued", "processing") \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            break
        if code == 404:
            led.violation(cycle, "job %s (%s) answers 404 after the restart" % (job.id, job.where))
            continue
        if code == 410:
            err = body.get("error") or ""
            if not err.startswith("job removed: "):
                led.violation(cycle, "job %s: 410 without the reason (%r)" % (job.id, err))
            rm = removal_state(all_logs, job.id)
            if rm and rm[1] not in ("uploaded", "completed", "failed"):
                led.violation(cycle, "job %s (%s) was removed for %s while %s" % (job.id, job.where, rm[0], rm[1]))
            elif rm is None and job.generated and job.done is None:
                led.note("cycle %d: job %s (%s) answers 410 %r and no log line says in which state it was "
                         "removed (a line lost at a kill?)" % (cycle, job.id, job.where, err[:40]))
            job.done, job.where = "removed", "410"
            continue
        if code != 200:
            led.violation(cycle, "job %s: job-status %d %s" % (job.id, code, body))
            continue
        if job.done == "removed":
            led.violation(cycle, "job %s answered 410 before and %s now" % (job.id, st))
            continue
        if job.params is not None and job.generated and st not in ("completed", "failed"):
            led.violation(cycle, "job %s (%s) still %s %ds after the restart" % (job.id, job.where, st, deadline_s))
            continue
        if job.done in ("completed", "failed") and st != job.done:
            led.violation(cycle, "job %s was %s (%s) before the crash and is %s after it" %
                          (job.id, job.done, job.where, st))
            continue
        if st == "failed":
            err = body.get("error") or ""
            if not err:
                led.violation(cycle, "job %s failed without a reason" % job.id)
            elif not ATTEMPTS_RE.search(err):
                led.violation(cycle, "job %s (a valid image) failed: %s" % (job.id, err))
            if job.error is not None and job.error != err:
                led.violation(cycle, "job %s: its reason changed (%r -> %r)" % (job.id, job.error, err))
            job.done, job.error = "failed", err
        elif st == "completed":
            if job.params is None:  # a generate whose answer the kill took
                fmt = (body.get("output_file") or "x.stl").rsplit(".", 1)[-1]
                job.params = (fmt, None, None)
            d = req(srv.port, "GET", body["download_url"])
            if d is None or d[0] != 200:
                led.violation(cycle, "job %s completed but its model does not download (%s)" %
                              (job.id, d[0] if d else "no answer"))
                continue
            if job.params[1] is None:
                if not model_ok(job.params[0], d[2]):
                    led.violation(cycle, "job %s: its model is not a whole file" % job.id)
            else:
                led.saw_model(cycle, job, d[2])
            job.done = "completed"


def run(args):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print("crash_torture: seed %d, %d cycle(s), binary %s" % (seed, args.cycles, args.binary), flush=True)
    rnd = random.Random(seed)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    images = [noise_png(rnd.choice((32, 40, 48, 64)), rnd.randrange(1 << 30), 6) for _ in range(args.images)]
    images_by_sha = set(sha(i) for i in images)
    cap = args.max_store_mb << 20
    env = dict(os.environ)
    pause = os.path.join(work, "pause")
    sflags = ["--workers", str(args.workers), "--max-store-mb", str(args.max_store_mb),
              "--ws-max-subscriptions", "1024", "--pause-file", pause, "--cache-disk-mb", "1024"]
    sanitized = "asan" in os.path.basename(args.binary) or "tsan" in os.path.basename(args.binary)
    stats = {"plain": 0, "evict": 0, "startup": 0, "startup_kills": 0, "kills_before_listen": 0}
    totals = {}
    led = Ledger()
    all_logs = []
    data = None
    pairs_before = set()
    started = time.monotonic()
    cycle = 0

    def scan(p, what):
        rep = [ln for ln in p.lines if SANITIZER_RE.search(ln)]
        if rep:
            i = p.lines.index(rep[0])
            led.violation(cycle, "%s: sanitizer report:\n%s" % (what, "\n".join(p.lines[i:i + 60])))

    for cycle in range(1, args.cycles + 1):
        if args.minutes and time.monotonic() - started > args.minutes * 60:
            print("time bound reached after %d cycle(s)" % (cycle - 1), flush=True)
            cycle -= 1
            break
        if data is None or (args.fresh_every and cycle % args.fresh_every == 1):
            data = os.path.join(work, "data%d" % cycle)
            led.jobs.clear()
            led.by_key.clear()
            all_logs = []
            pairs_before = set()
        # Start held (workers wait at the pause file): the disk is quiet.
        open(pause, "w").close()
        srv = Proc(args.binary, data, sflags, env)
        try:
            srv.wait_listening()
        except RuntimeError as e:
            led.violation(cycle, str(e))
            break
        check_disk(cycle, led, srv, data, cap, images_by_sha, pairs_before)
        os.unlink(pause)
        check_ledger(cycle, led, srv, all_logs + srv.lines, args.deadline)
        # Busy: clients, then kill -9.
        kind = rnd.choices(("plain", "evict", "startup"), (0.55, 0.25, 0.2))[0]
        stats[kind] += 1
        window = rnd.uniform(0.3, args.busy)
        at = rnd.uniform(0, window)
        stop = threading.Event()
        evicted = threading.Event()
        if kind == "evict":
            skip = rnd.randrange(3)  # which eviction (the first, second, third)
            seen = [0]

            def on_line(ln, skip=skip, seen=seen):
                if " removed (space, " in ln:
                    seen[0] += 1
                    if seen[0] > skip:
                        evicted.set()
            srv.on_line = on_line
        clients = [Client(srv.port, led, images, random.Random(rnd.randrange(1 << 30)), stop, cycle)
                   for _ in range(args.clients)]
        for c in clients:
            c.start()
        sampler = threading.Thread(target=sample_store, args=(srv.port, cap, stop, led, cycle), daemon=True)
        sampler.start()
        if kind == "evict":
            evicted.wait(timeout=window)  # the kill lands as the budget evicts (or at the window's end)
            time.sleep(rnd.uniform(0, 0.003))
        else:
            time.sleep(at)
        srv.kill()
        stop.set()
        for c in clients:
            c.join(timeout=30)
            for k, v in c.counts.items():
                totals[k] = totals.get(k, 0) + v
        scan(srv, "run %d" % cycle)
        all_logs += srv.lines
        for jid in led.watch[:5]:  # the log lines of the jobs a violation named
            print("log lines of job %s:" % jid)
            for ln in all_logs:
                if jid in ln:
                    print("  |", ln)
        del led.watch[:]
        if kind == "startup":
            for _ in range(rnd.choice((1, 2))):
                p = Proc(args.binary, data, sflags, env)
                # Half of them within the first 30 ms: recovery itself
                # (a start takes a few ms to tens of ms before it listens).
                top = args.startup_ms if rnd.random() < 0.5 else min(30.0, args.startup_ms)
                time.sleep(rnd.uniform(0, top / 1000.0))
                p.kill()
                stats["startup_kills"] += 1
                if p.port is None:
                    stats["kills_before_listen"] += 1
                scan(p, "start-up %d" % cycle)
                all_logs += p.lines
        # The next start holds its workers: nothing is cached before the
        # check, and every complete entry must be adopted again.
        pairs_before = cache_pairs(data)
        print("cycle %d: %s kill at %.3fs of %.3fs (%s), %d job(s) in the ledger, %d violation(s) so far" %
              (cycle, kind, at, window, "evicting" if evicted.is_set() else "-", len(led.jobs),
               len(led.violations)), flush=True)
        if led.violations and args.stop_on_violation:
            break
    # The last restart, checked the same way, then a clean stop.
    if data is not None and not (led.violations and args.stop_on_violation):
        open(pause, "w").close()
        srv = Proc(args.binary, data, sflags, env)
        srv.wait_listening()
        check_disk(cycle, led, srv, data, cap, images_by_sha, pairs_before)
        os.unlink(pause)
        check_ledger(cycle, led, srv, all_logs + srv.lines, args.deadline)
        rc = srv.term()
        scan(srv, "final run")
        if rc != 0:
            led.violation(cycle, "the final orfeasd did not exit 0 on SIGTERM (%s)" % rc)
    print("crash_torture: seed %d: %d cycle(s) in %.0fs (%s); client answers: %s" %
          (seed, cycle, time.monotonic() - started, stats, dict(sorted(totals.items()))), flush=True)
    for n in led.notes:
        print("note:", n)
    if led.violations:
        print("FAIL: %d violation(s), seed %d" % (len(led.violations), seed))
        for v in led.violations:
            print("  ", v)
        return 1
    if sanitized:
        print("(under %s)" % os.path.basename(args.binary))
    print("PASS: no violation (seed %d)" % seed)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--work", default="/tmp/crash-torture")
    ap.add_argument("--binary", default=ORFEASD)
    ap.add_argument("--minutes", type=float, default=0, help="stop starting cycles after this long (0: no bound)")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-store-mb", type=int, default=3)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--busy", type=float, default=2.0, help="longest busy window, seconds")
    ap.add_argument("--startup-ms", type=float, default=300)
    ap.add_argument("--deadline", type=float, default=60, help="seconds a promised job may take to end")
    ap.add_argument("--fresh-every", type=int, default=8, help="a fresh data dir every N cycles")
    ap.add_argument("--stop-on-violation", action="store_true")
    ap.add_argument("--short", action="store_true", help="ctest's size: 2 cycles, 1 s busy windows")
    args = ap.parse_args()
    if args.short:
        args.cycles, args.busy = 2, 1.0
    sys.exit(run(args))


if __name__ == "__main__":
    main()
