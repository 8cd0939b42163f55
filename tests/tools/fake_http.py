#!/usr/bin/python3
"""A misbehaving Prometheus or orfeasd on 127.0.0.1, for the tools' failure tests.

usage: fake_http.py PORTFILE MODE [ARG]
Binds a free port, writes it to PORTFILE, serves until killed. Every request
is appended to PORTFILE.log as "UNIX_TIME METHOD PATH".
  prom500          /-/ready 200; every query 500 with a plain-text body
  promslow SECS    /-/ready 200; every query answers an empty result after SECS
  promlockstep N   /-/ready 200; every query answers an empty result once N
                   clients have asked one (a barrier): N reports run at once
                   go through their queries in step, and end (write their
                   files) at the same moment. A wait past 10 s (a client
                   short) ends the steps: every query is answered at once
  orfeas429 SECS   /health 200; uploads 200; generate-3d 429 with Retry-After SECS
  orfeasfull       /health 200; every upload 503 (the store is full), no Retry-After
  orfeasrun        /health 200; uploads 200; generate-3d 202; job-status
                   "processing" for ever (a run only a deadline or a signal ends)
"""
import http.server
import json
import sys
import threading
import time

port_file, mode = sys.argv[1:3]
arg = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
log = open(port_file + ".log", "a", buffering=1)
step = threading.Barrier(int(arg)) if mode == "promlockstep" else None


def lockstep():
    """Waits until every client has asked (promlockstep)."""
    global step
    barrier = step
    try:
        if barrier is not None:
            barrier.wait(10)
    except threading.BrokenBarrierError:
        step = None  # a client short (it failed): no more steps


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the headers and the body go out in two writes; with
    # Nagle the body waited for the client's delayed ACK of the headers,
    # 40 ms an answer (an orfeas-report run of ~50 queries took 2.4 s).
    disable_nagle_algorithm = True

    def answer(self, status, body, ctype="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): what the test wants

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        log.write("%.3f %s %s\n" % (time.time(), self.command, self.path))
        p = self.path.split("?")[0]
        if p in ("/-/ready", "/health"):
            return self.answer(200, {"status": "healthy"})
        if mode == "prom500":
            return self.answer(500, "upstream broke\n", "text/plain")
        if mode in ("promslow", "promlockstep"):
            if mode == "promlockstep":
                lockstep()
            else:
                time.sleep(arg)
            return self.answer(200, {"status": "success",
                                     "data": {"resultType": "vector", "result": []}})
        if p == "/api/upload-image" and mode == "orfeasfull":
            return self.answer(503, {"error": "the whole --max-store-mb holds queued or running "
                                     "jobs; retry later", "status": 503})
        if p == "/api/upload-image":
            return self.answer(200, {"job_id": "job-%d" % (time.time_ns() % 10**9)})
        if p == "/api/generate-3d":
            if mode == "orfeas429":
                return self.answer(429, {"error": "queue full, retry later", "retry_after": arg},
                                   headers=[("Retry-After", "%g" % arg)])
            return self.answer(202, {"job_id": "x", "status": "queued"})
        if p.startswith("/api/job-status/"):
            return self.answer(200, {"status": "processing", "progress": 10})
        return self.answer(404, {"error": "not found"})

    do_GET = do_POST = handle_any

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402 (the port file appears whole: rename)
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
