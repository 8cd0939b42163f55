"""rellib: what the reliability tests (issue #13) share, on top of
tests/service/odlib.py (the server, the HTTP and WebSocket clients).

- Attackers: raw sockets from other loopback addresses (127.0.0.2 and up:
  Linux routes all of 127/8 to lo), so the per-address limit sees them as
  other clients than the normal one (127.0.0.1). Bounded in count and time.
- normal_client(): what a normal client must still get during an attack:
  /health and one full job (upload, generate, status until completed,
  download), every request on a fresh connection answered within a 1 s
  deadline (the socket timeout), the job completed within its deadline.
- rss_kb(): VmRSS of a process, from /proc/PID/status.
- Sizes: each test runs at a scaled-down size; ORFEAS_ATTACK_SCALE=full runs
  the sizes issue #13 quotes (by hand: minutes, and not in make test).
"""
import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "service"))
from odlib import (ORFEASD, SANITIZED, STARTED, WS, Server, TestFailure, admin_port, check, check_within,  # noqa: E402,F401
                   exposed, free_port, main, make_image, multipart, parse_metrics, value, wait_for)

FULL = os.environ.get("ORFEAS_ATTACK_SCALE") == "full"
# Under ASan/TSan (odlib.SANITIZED) memory is padded and kept in quarantine:
# RSS bounds are 4x.


def rss_bound(kib):
    return kib * (4 if SANITIZED else 1)
DEADLINE = 1.0  # seconds a normal client's request may take during an attack


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise TestFailure("no VmRSS for pid %d" % pid)


def request(port, method, path, body=None, headers=None, timeout=DEADLINE, source=None):
    """One request on a fresh connection, answered within `timeout` seconds:
    a deadline on the request (the socket's timeout, for the connect and
    each send and read), not a duration measured afterwards on this
    client's clock, which a loaded machine stretches (issue #12).
    (status, headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
    except (OSError, http.client.HTTPException) as e:
        raise TestFailure("%s %s: no answer within %.1fs: %r" % (method, path, timeout, e))
    finally:
        c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def normal_client(srv, img, health_port=None, job_deadline=DEADLINE, quality=1):
    """/health and one full job, each request within DEADLINE. The job's
    own run (generate accepted -> completed) within job_deadline."""
    st, _, _ = request(health_port or srv.port, "GET", "/health")
    check(st == 200, "  normal client: /health 200 within %.0fs" % DEADLINE)
    body, ct = multipart({"image": ("n.png", img)})
    st, _, data = request(srv.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
    if st != 200:
        raise TestFailure("normal client: upload answered %d: %r" % (st, data[:200]))
    jid = json.loads(data)["job_id"]
    # Each its own width: never a cache hit, the pipeline runs.
    normal_client.n = getattr(normal_client, "n", 0) + 1
    req = json.dumps({"job_id": jid, "format": "stl", "quality": quality,
                      "dimensions": {"width": 20 + normal_client.n}})
    st, _, data = request(srv.port, "POST", "/api/generate-3d", req, {"Content-Type": "application/json"})
    if st != 202:
        raise TestFailure("normal client: generate answered %d: %r" % (st, data[:200]))
    end = time.monotonic() + job_deadline
    while True:
        st, _, data = request(srv.port, "GET", "/api/job-status/" + jid)
        js = json.loads(data)
        if js.get("status") in ("completed", "failed"):
            break
        if time.monotonic() > end:
            raise TestFailure("normal client: job not done within %.1fs: %r" % (job_deadline, js))
        time.sleep(0.02)
    check(js["status"] == "completed", "  normal client: one full job completed within %.0fs" % job_deadline)
    st, _, model = request(srv.port, "GET", js["download_url"])
    check(st == 200 and len(model) > 84, "  normal client: its model downloads (%d bytes)" % len(model))


class Attack:
    """Background attacker threads, stopped (and their sockets closed) by
    stop(), which the tests call in finally."""

    def __init__(self):
        self.stopping = threading.Event()
        self.threads = []
        self.socks = []
        self.lock = threading.Lock()
        self.errors = []

    def keep(self, s):
        with self.lock:
            self.socks.append(s)

    def spawn(self, fn, *args):
        def run():
            try:
                fn(*args)
            except Exception as e:  # an attacker's failure is reported, not fatal
                self.errors.append(repr(e))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
            self.socks.clear()

    def connect(self, port, source, timeout=2):
        """A connection from `source`, or None when refused (reset or closed
        by the server: the per-address limit)."""
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        except OSError:
            return None
        self.keep(s)
        return s


def raw(port, data, timeout=DEADLINE, source=None, until=None):
    """Sends raw bytes on a new connection and reads until the server closes
    it, stops sending for `timeout` s, or sent `until`. Everything received;
    raw.closed says whether the server closed the connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    got = b""
    raw.closed = False
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raw.closed = True
                break
            got += chunk
            if until is not None and until in got:
                break
    except socket.timeout:
        pass
    except OSError:
        raw.closed = True
    finally:
        s.close()
    return got


def closed_by_server(s, wait=0.0):
    """1 when the server has closed (or reset) this connection."""
    try:
        s.settimeout(wait if wait > 0 else 0.001)
        return 1 if s.recv(4096) == b"" else 0
    except socket.timeout:
        return 0
    except OSError:
        return 1


def metric(srv, name, port=None, **labels):
    st, _, data = request(port or srv.port, "GET", "/metrics", timeout=5)
    return value(parse_metrics(data.decode()), name, **labels)


def samples(srv, port=None):
    st, _, data = request(port or srv.port, "GET", "/metrics", timeout=5)
    return parse_metrics(data.decode())
