#!/usr/bin/python3
"""deploy/nginx/orfeas.conf in front of orfeasd, on loopback (issue #13).

nginx (Debian's) runs in the foreground as a child of this test, with a
temporary prefix (its pid file, logs and temp folders in WORKDIR), on a free
127.0.0.1 port; the deploy file is included as it is, only its `listen` line
and its upstream's port rewritten. orfeasd runs as the file says, with
--trusted-proxies 127.0.0.1/32 and --allowed-hosts naming the site's public
name (studio.example here). Checks: a whole job through nginx, a WebSocket
through nginx (its events), Socket.IO's handshake through /socket.io/, the
page at http://studio.example (its WebSocket and uploads pass), a rebound
name's requests and WebSocket refused (403 host_refused: nginx passes the
browser's Host, and orfeasd checks it), the body limit (nginx's 413 before
the body), /metrics not published, and the rate limit keyed by the real
client (two clients on 127.0.0.2 and 127.0.0.3, one of them forging
X-Forwarded-For); an upstream whose first node is dead (every request is
answered by the other node), and one whose first node drains after SIGTERM
(its job held): a GET is answered by the other node, and a POST that nginx
had already written to the draining node before it accepted the connection
(held there: the node stopped with SIGSTOP until the request's bytes wait
in its backlog) gets the node's 503 with Retry-After, never a 502.

Usage: nginx_test.py CASE WORKDIR  (ctest: reliability.nginx)
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading

from rellib import (ORFEASD, STARTED, WS, Server, TestFailure, admin_port, check, check_within, free_port, main, make_image,
                    multipart, normal_client, raw, request, samples, value, wait_for)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CONF = os.path.join(ROOT, "deploy", "nginx", "orfeas.conf")
STATUS = "/api/job-status/00000000-0000-4000-8000-000000000000"  # rate limited, 404
SITE = "studio.example"  # the public name nginx serves, in orfeasd's --allowed-hosts


def nginx_conf(work, port, upstream, first=()):
    """The deploy file with its listen line and upstream port rewritten,
    inside a main context whose files all live in `work`. first: ports
    listed before it in the upstream (cluster nodes that died, or answer
    503)."""
    text = open(CONF).read()
    text, n1 = re.subn(r"(?m)^(\s*)listen 80;", r"\1listen 127.0.0.1:%d;" % port, text)
    servers = "".join("server 127.0.0.1:%d;\n    " % p for p in first) + "server 127.0.0.1:%d;" % upstream
    text, n2 = re.subn(r"(?m)^(\s*)server 127\.0\.0\.1:5000;", lambda m: m.group(1) + servers, text)
    if n1 != 1 or n2 != 1:
        raise TestFailure("deploy/nginx/orfeas.conf: expected one `listen 80;` and one upstream "
                          "`server 127.0.0.1:5000;` (found %d, %d)" % (n1, n2))
    with open(os.path.join(work, "orfeas.conf"), "w") as f:
        f.write(text)
    temps = "".join("    %s_temp_path %s/%s;\n" % (k, work, k)
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main_conf = os.path.join(work, "nginx.conf")
    with open(main_conf, "w") as f:
        f.write("daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log info;\n"
                "events { worker_connections 256; }\nhttp {\n    access_log %s/access.log;\n%s"
                "    include %s/orfeas.conf;\n}\n" % (work, work, work, temps, work))
    return main_conf


class Nginx:
    def __init__(self, work, upstream, first=(), name="nginx"):
        self.work = os.path.join(work, name)
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)  # its workers run as nobody when we are root
        self.port = free_port()
        conf = nginx_conf(self.work, self.port, upstream, first)
        p = subprocess.run(["nginx", "-t", "-q", "-p", self.work, "-c", conf, "-e", self.work + "/error.log"],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 0, "nginx -t accepts deploy/nginx/orfeas.conf%s" % (": " + p.stderr if p.stderr else ""))
        self.proc = subprocess.Popen(["nginx", "-p", self.work, "-c", conf, "-e", self.work + "/error.log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        STARTED.append(self.proc)
        wait_for(lambda: self._up(), "nginx to listen on 127.0.0.1:%d" % self.port, timeout=20)

    def _up(self):
        if self.proc.poll() is not None:
            raise TestFailure("nginx exited (rc=%s): %s" % (self.proc.returncode, self.log()))
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self):
        try:
            return open(os.path.join(self.work, "error.log")).read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def socketio_open(port):
    """A Socket.IO websocket handshake through `port`: the first frame's
    payload (the Engine.IO open packet, "0{...}")."""
    key = base64.b64encode(os.urandom(16))
    got = raw(port, b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: studio.example\r\n"
              b"Upgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n",
              timeout=5, until=b"}")
    if not got.startswith(b"HTTP/1.1 101"):
        raise TestFailure("Socket.IO handshake through nginx: %r" % got[:200])
    frame = got.split(b"\r\n\r\n", 1)[1]
    n = frame[1] & 0x7F
    off = 4 if n == 126 else 2
    return frame[off:]


class Via:
    """What normal_client() needs of a server: a port (nginx's)."""

    def __init__(self, port):
        self.port = port


def backlog_bytes(port):
    """Bytes waiting unread in the established connections to 127.0.0.1:port
    (/proc/net/tcp: rx_queue), those the server has not accepted yet
    included."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for ln in f:
            fields = ln.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if local == "0100007F:%04X" % port and state == "01":
                total += int(queues.split(":")[1], 16)
    return total


def proc_state(pid):
    """The state letter of /proc/PID/stat (T: stopped)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def limited(port, source, xff=None):
    h = {"X-Forwarded-For": xff} if xff else {}
    return request(port, "GET", STATUS, headers=h, source=source)[0]


def check_keepalive_timeout():
    """nginx, not the node, closes an idle pooled connection: the upstream's
    keepalive_timeout is below orfeasd's default idle keep-alive wait
    (--header-timeout, from --help). The other way round a request nginx
    writes into a connection the node is closing that instant is reset
    under it: a 502 for a POST (nginx never sends one twice); nginx's
    default (60 s) is that way round."""
    p = subprocess.run([ORFEASD, "--help"], capture_output=True, text=True, timeout=10)
    m = re.search(r"^  --header-timeout .*\(default ([0-9.]+)\)", p.stdout, re.M)
    check(m is not None, "orfeasd --help gives --header-timeout's default")
    up = re.search(r"(?ms)^upstream orfeasd \{(.*?)^\}", open(CONF).read())
    kt = re.search(r"^\s*keepalive_timeout\s+([0-9]+)s;", up.group(1), re.M) if up else None
    check(kt is not None and float(kt.group(1)) < float(m.group(1)),
          "deploy/nginx/orfeas.conf: the upstream's keepalive_timeout (%s) is below orfeasd's idle "
          "keep-alive wait (--header-timeout, %s s)" % (kt.group(1) + " s" if kt else "not set: 60 s", m.group(1)))


def case_nginx(work):
    if shutil.which("nginx") is None:
        raise TestFailure("nginx is not installed (scripts/install-deps installs nginx-light)")
    check_keepalive_timeout()
    img = make_image("png", 64, os.path.join(work, "n.png"))
    s = Server(os.path.join(work, "data"), "--trusted-proxies", "127.0.0.1/32", "--allowed-hosts", SITE,
               "--rate-limit", "0.1", "--rate-burst", "30", "--workers", "1")
    ng = Nginx(work, s.port)
    try:
        via = Via(ng.port)
        # A whole job through nginx, a WebSocket watching it.
        ws = WS(ng.port)
        check(ws.status == 101, "WebSocket upgrade through nginx: 101")
        ev = ws.recv_event()
        check(ev and ev["event"] == "connection_established", "  connection_established through nginx")
        normal_client(via, img, job_deadline=5)
        body, ct = multipart({"image": ("n.png", img)})
        st, _, b = request(ng.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
        jid = json.loads(b)["job_id"]
        ws.send_json({"event": "subscribe", "data": {"job_id": jid}})
        st, _, _ = request(ng.port, "POST", "/api/generate-3d",
                           '{"job_id": "%s", "format": "stl", "dimensions": {"width": 77}}' % jid,
                           {"Content-Type": "application/json"})
        check(st == 202, "generate through nginx: 202")
        got, closed = ws.events_until(lambda e: e["event"] in ("generation_complete", "generation_error"),
                                      timeout=30)
        kinds = [e["event"] for e in got]
        check(not closed and kinds[-1] == "generation_complete" and "stage_change" in kinds,
              "the job's events arrive over the WebSocket through nginx (%d events)" % len(kinds))
        ws.close()
        check(socketio_open(ng.port).startswith(b"0{"), "Socket.IO (/socket.io/, EIO=4 websocket) through nginx: "
              "101 and the Engine.IO open packet")
        # A page served through nginx (the Studio) sends its own origin,
        # port included; orfeasd takes it as its own only if nginx passes
        # on the Host the browser sent (with $host the port was dropped, and
        # the page's WebSocket and uploads were refused as another origin's).
        page = "http://127.0.0.1:%d" % ng.port
        ws = WS(ng.port, headers="Origin: %s\r\n" % page)
        check(ws.status == 101, "a WebSocket from the page's own origin through nginx: 101 (%s)" % ws.status)
        ws.close()
        st, _, b = request(ng.port, "POST", "/api/upload-image", body, {"Content-Type": ct, "Origin": page})
        check(st == 200, "an upload from the page's own origin (%s) through nginx: 200 (%d %r)" % (page, st, b[:80]))
        st, _, _ = request(ng.port, "POST", "/api/upload-image", body,
                           {"Content-Type": ct, "Origin": "http://evil.example"})
        check(st == 403, "an upload from another origin through nginx: 403 (%d)" % st)
        # The site's public name (what a browser sends through nginx, port
        # and all) is in --allowed-hosts: its page's WebSocket and uploads
        # pass. A rebound name (DNS rebinding: a page at attacker.example
        # whose name now points at this nginx) is the same origin as the
        # site to the browser, but its Host is refused by orfeasd, which
        # nginx passes it to ($http_host): every route, the WebSocket too.
        site = "%s:%d" % (SITE, ng.port)
        st, _, b = request(ng.port, "GET", "/api/health", headers={"Host": site})
        check(st == 200, "Host %s (in --allowed-hosts) through nginx: 200 (%d %r)" % (site, st, b[:80]))
        ws = WS(ng.port, host_header=site, headers="Origin: http://%s\r\n" % site)
        check(ws.status == 101, "a WebSocket from the page at http://%s through nginx: 101 (%s)" % (site, ws.status))
        ws.close()
        st, _, b = request(ng.port, "POST", "/api/upload-image", body,
                           {"Content-Type": ct, "Host": site, "Origin": "http://" + site})
        check(st == 200, "an upload from the page at http://%s through nginx: 200 (%d %r)" % (site, st, b[:80]))
        rebound = "attacker.example:%d" % ng.port
        for method, path, data, h in [("GET", "/api/health", None, {}), ("GET", STATUS, None, {}),
                                      ("POST", "/api/upload-image", body, {"Content-Type": ct})]:
            h = dict(h, Host=rebound, Origin="http://" + rebound)
            st, _, b = request(ng.port, method, path, data, h)
            check(st == 403 and json.loads(b)["error"] == 'Host "%s" is not one this server answers to: add it to '
                  '--allowed-hosts' % rebound, "%s %s with a rebound Host (%s) through nginx: orfeasd's 403 naming "
                  "the Host and the flag (%d %r)" % (method, path, rebound, st, b[:100]))
        ws = WS(ng.port, host_header=rebound, headers="Origin: http://%s\r\n" % rebound)
        check(ws.status == 403, "a WebSocket with a rebound Host through nginx: 403 (%s)" % ws.status)
        ws.sock.close()
        # An HTTP/1.0 client may leave Host out, and orfeasd answers it; nginx
        # then sent orfeasd no Host, in HTTP/1.1, which orfeasd refuses (RFC
        # 9112 3.2: 400) unless the file names one for it.
        got = raw(ng.port, b"GET /api/health HTTP/1.0\r\n\r\n", timeout=10)
        check(re.match(rb"HTTP/1\.[01] 200", got), "HTTP/1.0 without Host through nginx: 200 (%r)" % got[:60])
        # Limits at the edge.
        got = raw(ng.port, b"POST /api/upload-image HTTP/1.1\r\nHost: studio.example\r\nContent-Type: multipart/form-data; "
                           b"boundary=x\r\nContent-Length: 52428801\r\n\r\n", timeout=10, until=b"\r\n\r\n")
        check(got.startswith(b"HTTP/1.1 413"), "a body over 50 MB (orfeasd's --max-upload-mb): nginx's 413 "
              "before the body")
        check(request(ng.port, "GET", "/metrics")[0] == 404, "/metrics is not published through nginx")
        # The rate limit sees the client, not nginx.
        # (burst 30: the jobs above, from 127.0.0.1, stay within it)
        a = [limited(ng.port, "127.0.0.2") for _ in range(31)]
        b_ = limited(ng.port, "127.0.0.3")
        forged = limited(ng.port, "127.0.0.2", xff="198.51.100.9")
        check(a == [404] * 30 + [429] and b_ == 404 and forged == 429,
              "rate limit per real client behind nginx: 127.0.0.2 429 after its burst of 30, 127.0.0.3 %d, "
              "127.0.0.2 forging X-Forwarded-For %d" % (b_, forged))
        # orfeasd logs a request once it is done, after the answer (and the
        # test reads its stderr on a thread): the line comes soon, not at once
        # (a check without the wait failed under stress --cpu 2).
        check_within(lambda: s.log_has(r"req GET /api/job-status/\{job_id\} 429 .* client=127\.0\.0\.2$"),
                     "orfeasd's access log names the client (127.0.0.2), not nginx", timeout=5)
        sm = samples(s)
        check(value(sm, "orfeas_http_forwarded_for_total", result="used") >= 6,
              "orfeas_http_forwarded_for_total{result=\"used\"} counts them")
        check(value(sm, "orfeas_errors_total", type="host_refused", endpoint="/api/health") == 1 and
              value(sm, "orfeas_errors_total", type="host_refused", endpoint="/ws") == 1,
              "the rebound Host's refusals counted in orfeas_errors_total{type=\"host_refused\"}")
        # A cluster: the upstream lists every node (docs/scaling.md). A node
        # that died (nothing listening) costs no request: nginx passes a
        # request it could not connect with to the next node.
        ng2 = Nginx(work, s.port, first=(free_port(),), name="nginx-cluster")
        try:
            got = [limited(ng2.port, "127.0.0.4") for _ in range(4)]
            check(got == [404] * 4, "through an upstream whose first node is dead, every request is answered "
                  "by the live one: %s" % got)
        finally:
            ng2.stop()
        # A node draining after SIGTERM closes a GET that comes on a new
        # connection unanswered, and nginx passes it on to the next node; a
        # POST there (which nginx never sends twice) gets a 503 with
        # Retry-After and Connection: close. Its job is held in its model's
        # rename (the test hook) so the drain lasts.
        pause = os.path.join(work, "pause")
        d = Server(os.path.join(work, "draining"), "--trusted-proxies", "127.0.0.1/32", "--workers", "1",
                   "--admin-listen", "127.0.0.1:0", env={"ORFEAS_TEST_RENAME_PAUSE_FILE": pause})
        ng3 = Nginx(work, s.port, first=(d.port,), name="nginx-drain")
        ng4 = Nginx(work, s.port, first=(d.port,), name="nginx-drain-post")
        try:
            st, _, b = request(d.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
            jid = json.loads(b)["job_id"]
            open(pause, "w").close()
            st, _, _ = request(d.port, "POST", "/api/generate-3d", '{"job_id": "%s", "format": "stl"}' % jid,
                               {"Content-Type": "application/json"})
            check(st == 202, "a job on the node to drain: 202")
            wait_for(lambda: json.loads(request(d.port, "GET", "/api/job-status/" + jid)[2])["status"] ==
                     "processing" or None, "its job to run", timeout=10)
            d.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: d.log_has(r"SIGTERM: draining"), "the node to drain", timeout=10)
            got = [request(ng3.port, "GET", "/api/health")[0] for _ in range(3)]
            check(d.proc.poll() is None, "the node is still draining (its job held)")
            check(got == [200] * 3, "through an upstream whose first node drains, every GET is answered by "
                  "the other: %s" % got)
            check(re.search(r"\[error\].*upstream.*GET /api/health", ng3.log()),
                  "... after nginx tried the draining node (its error log says so)")
            # The order that made a 502 (recv() failed (104: Connection reset
            # by peer) in nginx's log): nginx had written the POST into a new
            # connection before the node accepted it, so the node closed it
            # with the request unread. Made certain here: the node is stopped
            # until the request's bytes wait in its backlog.
            d.proc.send_signal(signal.SIGSTOP)
            res = []
            try:
                wait_for(lambda: proc_state(d.proc.pid) == "T" or None, "the draining node to stop", timeout=10)
                t = threading.Thread(target=lambda: res.append(request(ng4.port, "POST", "/api/upload-image", body,
                                                                       {"Content-Type": ct}, timeout=30)))
                t.start()
                wait_for(lambda: backlog_bytes(d.port) > 0 or res or None,
                         "nginx's POST written into a connection the draining node has not accepted", timeout=10)
                check(not res, "nginx's POST waits in the stopped node's backlog (%r)" % res[:1])
            finally:
                d.proc.send_signal(signal.SIGCONT)
            t.join(35)
            check(res, "the POST through nginx was answered")
            st, h, b = res[0]
            check(st == 503 and h.get("retry-after") == "10" and
                  json.loads(b)["error"] == "Service shutting down; retry on another instance",
                  "a POST nginx had sent to the draining node: the node's 503 with Retry-After: 10 and what to "
                  "do, not a 502 (%d %r %r)" % (st, h, b[:200]))
            broken = re.search(r"\[error\].*POST /api/upload-image.*", ng4.log())
            check(not broken, "... which nginx got as an answer, not as a broken connection%s" %
                  (": " + broken.group(0) if broken else ""))
            # Straight to the node (a client without a proxy): the same 503,
            # and the connection closed after it.
            st, h, _ = request(d.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
            check(st == 503 and h.get("connection", "").lower() == "close" and h.get("retry-after") == "10",
                  "a POST on a new connection to the draining node: 503, Retry-After: 10, Connection: close "
                  "(%d %r)" % (st, h))
            # A chunked body (no length to refuse it by) is read to its end
            # first; a GET there is closed unanswered.
            got = raw(d.port, b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nContent-Type: " +
                      ct.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024 +
                      b"\r\n0\r\n\r\n", timeout=5)
            check(got.startswith(b"HTTP/1.1 503") and raw.closed and b"\r\nRetry-After: 10\r\n" in got,
                  "a chunked POST on a new connection to the draining node: 503 after its body, then closed (%r)"
                  % got[:80])
            got = raw(d.port, b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5)
            check(got == b"" and raw.closed, "a GET on a new connection to the draining node: closed unanswered "
                  "(%r)" % got[:80])
            sm = samples(d, admin_port(d))  # /metrics on a new public connection: closed while draining
            check(value(sm, "orfeas_errors_total", type="draining", endpoint="/api/upload-image") == 3,
                  "the 503s counted in orfeas_errors_total{type=\"draining\"}")
            check(value(sm, "orfeas_http_connections_closed_total", reason="draining") >= 2,
                  "the GETs closed unanswered (nginx's and this one) counted in "
                  "orfeas_http_connections_closed_total{reason=\"draining\"}")
        finally:
            try:
                os.unlink(pause)
            except FileNotFoundError:
                pass
            d.proc.send_signal(signal.SIGCONT)
            ng4.stop()
            ng3.stop()
            rc_d = d.stop()
        check(rc_d == 0, "the drained node exits 0 once its job is done")
        check(not d.log_has(r"Application reported internal error"), "the GETs it closed unanswered are not "
              "logged as errors (libmicrohttpd's line for each)")
    finally:
        ng.stop()
        rc = s.stop()
    check(ng.proc.returncode == 0, "nginx stopped cleanly")
    check(rc == 0, "orfeasd exit 0")


if __name__ == "__main__":
    main({"nginx": case_nginx})
