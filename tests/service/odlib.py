"""odlib: helpers for the orfeasd integration tests (stdlib only).

Server starts the real build/orfeasd on 127.0.0.1 with port 0 (the kernel
picks a free port; the test reads it from the "listening on" log line),
keeps its stderr, and stops it by PID. Every wait has a deadline: wait_for()
polls a condition until it holds or raises with what it last saw.
WS is a minimal RFC 6455 client (masked frames, as a browser sends), also
able to send broken frames on purpose.
"""
import base64
import datetime
import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

BUILD = os.environ.get("ORFEAS_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
ORFEASD = os.environ.get("ORFEASD_BIN", os.path.join(BUILD, "orfeasd"))
TESTIMG = os.path.join(BUILD, "tests", "od-testimg")
# orfeasd built with ASan or TSan (ORFEASD_BIN=.../tests/orfeasd_asan): cases
# that repeat a long scenario run it at a smaller size there (the sanitizer
# needs the paths run, not the volume), RSS bounds are wider.
SANITIZED = re.search(r"orfeasd_(asan|tsan)$", ORFEASD) is not None


class TestFailure(Exception):
    pass


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(n):
    """n distinct loopback ports free now, for a server a test starts later.
    Picked at random outside the kernel's ephemeral range: a port found by
    binding port 0 comes from that range, where every outgoing connection of
    every test running beside this one takes its local port, so one of them
    could hold it by the time the server binds (monitoring.stack_native's
    webhook once failed so: EADDRINUSE under ctest -j2). Another test that
    picks the same way can still choose the same port in the moment before
    the server binds it: ~1 in 27000 a port."""
    import random
    lo, hi = _ephemeral_range()
    pool = [p for p in range(10000, 65536) if not lo <= p <= hi]
    rnd, got = random.SystemRandom(), []
    while len(got) < n:
        p = rnd.choice(pool)
        if p in got:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        got.append(p)
    return got


def free_port():
    return free_ports(1)[0]


def check(cond, what):
    if not cond:
        raise TestFailure(what)
    print("ok:", what, flush=True)


def wait_for(pred, what, timeout=30.0, interval=0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TestFailure("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


def check_within(pred, what, timeout=30.0, interval=0.02):
    """check() for a condition that must come true within `timeout` seconds:
    "ok: what" once pred() holds (its value returned), else a failure with
    what pred() last returned."""
    got = wait_for(pred, what, timeout, interval)
    check(got, what)
    return got


# Every server a case starts, so main() can stop the ones a failing case
# leaves running (by PID, never by name) and show what they logged.
STARTED = []
SERVERS = []
SANITIZER_RE = re.compile(r"WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                          r"runtime error:")


def kill_started():
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def print_server_logs():
    """On a failure: each server's sanitizer report, or else its last lines
    (a failing "exit 0" says nothing without them)."""
    for i, srv in enumerate(SERVERS):
        lines = list(srv.lines)
        first = next((k for k, ln in enumerate(lines) if SANITIZER_RE.search(ln)), None)
        shown = lines[first:first + 150] if first is not None else lines[-15:]
        print("--- orfeasd #%d (pid %d, rc %s): %s" % (i + 1, srv.proc.pid, srv.proc.poll(),
              "sanitizer report" if first is not None else "last %d log lines" % len(shown)))
        for ln in shown:
            print("  |", ln)


class Server:
    def __init__(self, data_dir, *args, env=None, wrap=None, listen="127.0.0.1:0"):
        """wrap: a command that execs the rest (e.g. prlimit), so proc.pid
        is still orfeasd's."""
        self.data_dir = data_dir
        self.lines = []
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(
            list(wrap or []) + [ORFEASD, "--listen", listen, "--data-dir", data_dir] + list(args),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=e)
        STARTED.append(self.proc)
        SERVERS.append(self)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        m = wait_for(lambda: self._port(), "orfeasd to listen", timeout=20)
        self.port = int(m)

    def _read(self):
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _port(self):
        if self.proc.poll() is not None:
            raise TestFailure("orfeasd exited early (rc=%s):\n%s" % (self.proc.returncode, "\n".join(self.lines)))
        for ln in self.lines:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", ln)
            if m:
                return m.group(1)
        return None

    def log_has(self, pattern):
        return any(re.search(pattern, ln) for ln in list(self.lines))

    def log_time(self, pattern):
        """When orfeasd logged the first line matching pattern, in seconds
        (its own clock, the line's timestamp): durations the server saw,
        which a client's clock on a loaded machine overstates."""
        for ln in list(self.lines):
            if re.search(pattern, ln):
                m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z ", ln)
                if not m:
                    raise TestFailure("no timestamp on the log line %r" % ln)
                return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
        raise TestFailure("no log line matches %r" % pattern)

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def json(self, method, path, obj=None, headers=None):
        h = dict(headers or {})
        body = None
        if obj is not None:
            body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
            h.setdefault("Content-Type", "application/json")
        st, hd, data = self.request(method, path, body, h)
        try:
            return st, hd, json.loads(data)
        except ValueError:
            raise TestFailure("%s %s: not JSON (%d): %r" % (method, path, st, data[:200]))

    def upload(self, img_bytes, filename="star.png", field="image"):
        body, ct = multipart({field: (filename, img_bytes)})
        return self.json("POST", "/api/upload-image", body, {"Content-Type": ct})

    def generate(self, job_id, fmt="stl", **kw):
        req = {"job_id": job_id, "format": fmt}
        req.update(kw)
        return self.json("POST", "/api/generate-3d", req)

    def status(self, job_id):
        return self.json("GET", "/api/job-status/" + job_id)[2]

    def wait_job(self, job_id, states=("completed", "failed"), timeout=60):
        return wait_for(lambda: (lambda s: s if s.get("status") in states else None)(self.status(job_id)),
                        "job %s to reach %s" % (job_id, "/".join(states)), timeout=timeout)

    def metrics(self, accept=None, gz=False):
        h = {}
        if accept:
            h["Accept"] = accept
        if gz:
            h["Accept-Encoding"] = "gzip"
        st, hd, data = self.request("GET", "/metrics", headers=h)
        if hd.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        return st, hd, data.decode()

    def samples(self):
        return parse_metrics(self.metrics()[2])

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("orfeasd did not exit within %ds of signal %d" % (timeout, sig))
        self.reader.join(timeout=5)
        return rc


def multipart(fields, boundary="----orfeasTestBoundary7MA4YWxkTrZu0gW"):
    out = []
    for name, val in fields.items():
        if isinstance(val, tuple):
            fn, data = val
            out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name, fn)).encode() + data + b"\r\n")
        else:
            out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, name, val)).encode())
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from the text format."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = LINE.match(ln)
        if not m:
            raise TestFailure("unparseable exposition line: %r" % ln)
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    """The sample with exactly these labels (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def _series(name, labels):
    return "%s{%s}" % (name, ",".join("%s=%r" % kv for kv in sorted(labels.items())))


def exposed(samples, name, **labels):
    """value(), but a failure when the series is not exposed: a check for 0
    must not pass on a series that is missing (orfeasd pre-creates its
    series, docs/api.md)."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise TestFailure("%s is not exposed" % _series(name, labels))
    return samples[key]


def total(samples, name, **labels):
    """Sum over every sample of name whose labels include these; a failure
    when there is none (a sum over nothing would pass a check for 0)."""
    want = set(labels.items())
    got = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    if not got:
        raise TestFailure("no %s series is exposed" % _series(name, labels))
    return sum(got)


def names(samples):
    return set(n for n, _ in samples)


def admin_port(srv):
    """The --admin-listen port, from the start-up line."""
    def find():
        for ln in list(srv.lines):
            m = re.search(r"admin listener on http://127\.0\.0\.1:(\d+)", ln)
            if m:
                return int(m.group(1))
        return None
    return wait_for(find, "the admin listener's start-up line", timeout=10)


def noise_png(side, seed, level=0):
    """A PNG of random RGB pixels, distinct bytes per seed. Random pixels do
    not compress: at zlib level 0 an upload of it takes its full size
    (side * side * 3 bytes) of the data dir."""
    import random
    import zlib
    rnd = random.Random(seed)
    raw = b"".join(b"\0" + bytes(rnd.getrandbits(8) for _ in range(side * 3)) for _ in range(side))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b""))


def make_image(kind, side, path):
    subprocess.run([TESTIMG, kind, str(side), path], check=True)
    with open(path, "rb") as f:
        return f.read()


class WS:
    def __init__(self, port, timeout=10, host="127.0.0.1", rcvbuf=None, path="/ws", headers="", host_header=None):
        """host_header: the Host header's value (default HOST:PORT; a name
        orfeasd does not answer gets 403, see --allowed-hosts)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small window (set before connect), for slow-client tests
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n%s\r\n"
                           % (path, host_header or "%s:%d" % (host, port), key, headers)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise TestFailure("WebSocket handshake: connection closed: %r" % buf)
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        self.head = head.decode("latin-1")

    def send_frame(self, opcode, payload, fin=True, mask=True, rsv=0):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            mk = os.urandom(4)
            payload = bytes(b ^ mk[i % 4] for i, b in enumerate(payload))
            hdr += mk
        self.sock.sendall(hdr + payload)

    def send_json(self, obj):
        self.send_frame(1, json.dumps(obj).encode())

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("frame not complete")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv_frame(self, timeout=10):
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv_event(self, timeout=10):
        """Next text event as a dict; None on a close frame. Pings are
        answered on the way, as a browser does (orfeasd closes a client that
        answers no ping within --ws-ping-timeout)."""
        while True:
            op, payload = self.recv_frame(timeout)
            if op == 9:
                self.send_frame(10, payload)
                continue
            if op == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_reason = payload[2:].decode("utf-8", "replace")
                return None
            if op == 1:
                return json.loads(payload)

    def events_until(self, pred, timeout=30):
        got = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.recv_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                return got, True
            got.append(ev)
            if pred(ev):
                return got, False

    def close(self):
        try:
            self.send_frame(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


def main(cases):
    """Runs the case named in argv[1] with a fresh data dir argv[2]."""
    name, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)  # a fresh data dir every run
    os.makedirs(work)
    try:
        cases[name](work)
    except TestFailure as e:
        print("FAIL:", e, flush=True)
        kill_started()
        for srv in SERVERS:
            srv.reader.join(timeout=5)
        print_server_logs()
        sys.exit(1)
    finally:
        kill_started()
    print("PASS: %s" % name)
