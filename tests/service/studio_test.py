#!/usr/bin/python3
"""The Studio's server side (issue #14), against the real orfeasd.
argv: CASE WORKDIR, like od_test.py. Cases:
  static   the page at / and /studio and its files under /static/: types,
           caching, CSP and nosniff, HEAD, ETag, 304 and 412 (RFC 9110
           13.2.2's order), Range ignored; hostile paths (raw
           requests, so no client normalises them), symbolic links out of
           the folder, the page staged again while served (the build's
           StageStatic.cmake), a missing --static-dir.
  socketio /socket.io/ at the frame level: Engine.IO's 400s (polling, old
           EIO, a sid, no upgrade), the open packet, CONNECT, bad packets
           (error events, counted), the heartbeat closing a client that
           never answers a ping, and a client's close packet.
  cors     --cors-origins: preflights from an allowed and a refused origin
           (the headers the original clients send), ACAO on answers and
           errors, Vary: Origin, never credentials, "*", the default
           (same-origin only), the WebSocket origin rule, a bad flag.
  hosts    --allowed-hosts (DNS rebinding): the default on loopback refuses
           a rebound name's Host on every kind of route, on the admin
           listener, on WebSocket and Socket.IO upgrades and on an upload
           (403 JSON naming the Host and the flag, counted as host_refused,
           logged once, nothing stored), and lets loopback names through
           (any case, any port, HTTP/1.0 without Host); the list from the
           environment, "*", and bad values (exit 2).
  routes   the routes the original clients call: /api/models-info (with
           the "device" its page requires), preview_url and /api/preview,
           /api/download-base64 (the same bytes as the download), each
           with bad input; generate-3d with the original pages' bodies.
"""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import base64  # noqa: E402
import email.utils  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from odlib import (ORFEASD, WS, Server, admin_port, check, check_within, exposed, main, make_image,  # noqa: E402
                   multipart, parse_metrics, total, value)


def raw_request(port, target, method="GET", headers=""):
    """One request exactly as written (no client normalises the path);
    returns (status, head text, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n" % (method, target, headers))
              .encode("latin-1"))
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode("latin-1"), body


def case_static(work):
    s = Server(os.path.join(work, "data"))
    st, hd, page = s.request("GET", "/")
    csp = hd.get("content-security-policy", "")
    check(st == 200 and hd["content-type"] == "text/html; charset=utf-8" and b"ORFEAS Studio" in page,
          "GET /: the Studio page, text/html")
    check("script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
          and "unsafe-inline" not in csp and "unsafe-eval" not in csp, "a strict CSP (%s)" % csp)
    check(hd.get("x-content-type-options") == "nosniff" and hd.get("x-frame-options") == "DENY",
          "nosniff and X-Frame-Options: DENY")
    check(hd.get("cache-control") == "public, max-age=60" and hd.get("last-modified"),
          "the page: cached a minute, with Last-Modified")
    st, _, page2 = s.request("GET", "/studio")
    check(st == 200 and page2 == page, "GET /studio: the same page")
    st, hd, body = s.request("HEAD", "/")
    check(st == 200 and body == b"" and hd.get("content-length") == str(len(page)), "HEAD /: headers only")
    st, hd304, body = s.request("GET", "/", headers={"If-Modified-Since": hd["last-modified"]})
    check(st == 304 and body == b"" and hd304.get("etag") == hd.get("etag"),
          "If-Modified-Since the same date: 304, with the ETag")
    etag, lm = hd.get("etag", ""), hd["last-modified"]
    check(re.match(r'^"[0-9a-f-]+"$', etag), "the page has a strong ETag (%s)" % etag)
    # RFC 9110 13.1.3: with If-None-Match present, If-Modified-Since is
    # ignored: another tag is the whole file, the page's own tag (or a
    # weak one of it, or "*") a 304.
    st, _, body = s.request("GET", "/", headers={"If-Modified-Since": lm,
                                                 "If-None-Match": '"an-etag-from-elsewhere"'})
    check(st == 200 and body == page, "If-None-Match with another tag, and an equal If-Modified-Since: 200, the "
          "page (%d)" % st)
    for inm in ["*", etag, "W/" + etag, '"x", ' + etag]:
        st, _, body = s.request("GET", "/", headers={"If-None-Match": inm})
        check(st == 304 and body == b"", "If-None-Match %s: 304 (%d)" % (inm, st))
    # A later date than the file's is a 304 too (the date compared, not the
    # string); an earlier one, or one that is no date, the page.
    for ims, want in [("Fri, 31 Dec 9999 23:59:59 GMT", 304), ("Sun, 06 Nov 1994 08:49:37 GMT", 200),
                      ("yesterday", 200)]:
        st, _, _ = s.request("GET", "/", headers={"If-Modified-Since": ims})
        check(st == want, "If-Modified-Since %s: %d (%d)" % (ims, want, st))
    # If-Match and If-Unmodified-Since: 412 when they fail, before any 304.
    for hdrs, want in [({"If-Match": etag}, 200), ({"If-Match": "*"}, 200), ({"If-Match": '"old"'}, 412),
                       ({"If-Unmodified-Since": lm}, 200),
                       ({"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, 412),
                       ({"If-Match": '"old"', "If-None-Match": "*"}, 412),
                       ({"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT", "If-Modified-Since": lm}, 412)]:
        st, _, body = s.request("GET", "/", headers=hdrs)
        ok = body == page if want == 200 else body.startswith(b"{") and json.loads(body).get("status") == 412
        check(st == want and ok, "%s: %d (%d)" % (hdrs, want, st))
    # No ranges here: a Range gets the whole file.
    st, hd, body = s.request("GET", "/", headers={"Range": "bytes=0-9"})
    check(st == 200 and body == page and "content-range" not in hd, "a Range on the page: 200, the whole page")
    st, _, _ = s.request("POST", "/")
    check(st == 405, "POST /: 405")

    for path, ctype in [("/static/studio.js", "text/javascript; charset=utf-8"),
                        ("/static/studio.css", "text/css; charset=utf-8"),
                        ("/static/favicon.svg", "image/svg+xml"),
                        ("/static/vendor/three.js", "text/javascript; charset=utf-8")]:
        st, hd, _ = s.request("GET", path)
        # An SVG opened as a document runs its scripts in this origin: it
        # gets a policy that runs none (a script or style file needs none).
        svg_csp = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        check(st == 200 and hd["content-type"] == ctype and hd.get("x-content-type-options") == "nosniff"
              and hd.get("content-security-policy") == (svg_csp if ctype == "image/svg+xml" else None)
              and hd["cache-control"] == "public, max-age=60",
              "%s: 200, %s, nosniff, cached a minute, CSP %s" % (path, ctype, hd.get("content-security-policy")))
    st, hd, body = s.request("GET", "/static/vendor/three.js")
    m = re.search(rb"three-([0-9.]+)/three\.module\.js", body)
    check(m is not None, "vendor/three.js names the versioned three.js")
    st, hd, body = s.request("GET", "/static/vendor/three-%s/three.module.js" % m.group(1).decode())
    check(st == 200 and hd["cache-control"] == "public, max-age=31536000, immutable" and len(body) > 100000,
          "three.js itself: 200, immutable for a year (%d bytes)" % len(body))
    st, _, body = s.request("GET", "/static/vendor/three-%s/addons/loaders/GLTFLoader.js" % m.group(1).decode())
    check(st == 200 and b"from 'three'" not in body and b"from '../../three.module.js'" in body,
          "the addons import three.js by a relative path (no import map needed)")

    # Hostile paths, sent raw. None may leave the folder or reach a file
    # that is not the page's; each is a JSON 404 (or 400 from MHD itself).
    cache = open(os.path.join(os.environ.get("ORFEAS_BUILD", ""), "CMakeCache.txt"), "rb").read(200) \
        if os.path.exists(os.path.join(os.environ.get("ORFEAS_BUILD", ""), "CMakeCache.txt")) else b"CMAKE"
    for target in ["/static/../CMakeCache.txt", "/static/%2e%2e/CMakeCache.txt",
                   "/static/..%2fCMakeCache.txt", "/static/vendor/../../orfeasd",
                   "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/.hidden",
                   "/static/a%00.js", "/static/vendor", "/static/vendor/", "/static/studio.js/",
                   "/static/" + "a/" * 20 + "x.js", "/static/" + "a" * 300 + ".js",
                   "/static/..\\..\\CMakeCache.txt", "/static/index.html.bak", "/static/../../../../etc/passwd"]:
        st, head, body = raw_request(s.port, target)
        check(st in (400, 404) and cache[:40] not in body and b"root:" not in body,
              "hostile path %s: %d, nothing leaked" % (target[:50], st))
    sm = parse_metrics(s.metrics()[2])
    check(value(sm, "orfeas_http_requests_total", method="GET", endpoint="/static/{path}", status="200") >= 6,
          "static files are counted under endpoint /static/{path}")
    # A HEAD sends no body: its response size is 0, in the histogram and
    # in the access log (not the size of the GET's body).
    check_within(lambda: s.log_has(r"req HEAD / 200 "), "the HEAD's log line", timeout=5)
    sm = parse_metrics(s.metrics()[2])
    check(s.log_has(r"req HEAD / 200 [0-9.]+ms in=0 out=0 ") and
          value(sm, "orfeas_http_response_size_bytes_count", method="HEAD", endpoint="/") == 1 and
          value(sm, "orfeas_http_response_size_bytes_sum", method="HEAD", endpoint="/") == 0,
          "HEAD /: response size 0 (sum %g)" % value(sm, "orfeas_http_response_size_bytes_sum", method="HEAD",
                                                      endpoint="/"))
    check(value(sm, "orfeas_http_requests_total", method="GET", endpoint="/", status="200") >= 1 and
          value(sm, "orfeas_http_requests_total", method="GET", endpoint="/studio", status="200") == 1,
          "the page is counted under endpoints / and /studio")
    check(s.stop() == 0, "exit 0")

    # --static-dir: a folder with links out of it. Only its own files.
    site = os.path.join(work, "site")
    os.makedirs(os.path.join(site, "sub"))
    with open(os.path.join(site, "index.html"), "w") as f:
        f.write("<!doctype html><title>mine</title>")
    with open(os.path.join(work, "secret.txt"), "w") as f:
        f.write("secret-bytes")
    os.symlink(os.path.join(work, "secret.txt"), os.path.join(site, "leak.txt"))
    os.symlink(work, os.path.join(site, "up"))
    os.mkfifo(os.path.join(site, "fifo.txt"))
    s = Server(os.path.join(work, "data2"), "--static-dir", site)
    st, hd, body = s.request("GET", "/")
    check(st == 200 and b"mine" in body, "--static-dir: its index.html is the page")
    # A file whose mtime is ahead of the server's clock (unpacked from a
    # machine whose clock ran ahead): RFC 9110 8.8.2.1, Last-Modified is
    # never later than the answer's Date (both the server's clock).
    ahead = time.time() + 86400
    os.utime(os.path.join(site, "index.html"), (ahead, ahead))
    st, hd, body = s.request("GET", "/")
    lm, date = email.utils.parsedate_to_datetime(hd["last-modified"]), email.utils.parsedate_to_datetime(hd["date"])
    check(st == 200 and lm <= date, "a file dated in the future: Last-Modified %s, not after Date %s"
          % (hd["last-modified"], hd["date"]))
    for target in ["/static/leak.txt", "/static/up/secret.txt", "/static/fifo.txt", "/static/sub"]:
        st, _, body = raw_request(s.port, target)
        check(st == 404 and b"secret-bytes" not in body, "%s (a link out, a FIFO, a folder): 404" % target)
    # The build stages the page again (make while make run serves it) into
    # the folder this orfeasd holds open: it must go on serving the new
    # files, not answer 404 for all of them until restarted (a folder
    # removed and made again is another folder). Its links are removed,
    # never followed.
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    r = subprocess.run(["cmake", "-DSRC=" + os.path.join(repo, "static"),
                        "-DNODE_MODULES=" + os.path.join(repo, "node_modules"), "-DOUT=" + site,
                        "-P", os.path.join(repo, "cmake", "StageStatic.cmake")], capture_output=True, timeout=60)
    check(r.returncode == 0, "StageStatic.cmake into the served folder (rc %d %r)" % (r.returncode, r.stderr[-200:]))
    st, _, body = s.request("GET", "/")
    st2, _, _ = s.request("GET", "/static/vendor/three.js")
    check(st == 200 and b"mine" not in body and b"ORFEAS Studio" in body and st2 == 200,
          "staged again while serving: the new page and its files, 200 (%d, %d)" % (st, st2))
    check(not any(os.path.lexists(os.path.join(site, n)) for n in ("sub", "leak.txt", "up", "fifo.txt"))
          and os.path.exists(os.path.join(work, "secret.txt")),
          "staged again: what the build did not put there is gone, the links' targets kept")
    check(s.stop() == 0, "exit 0")

    r = subprocess.run([ORFEASD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "d3"),
                        "--static-dir", os.path.join(work, "missing")],
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, timeout=30)
    check(r.returncode != 0 and b"--static-dir" in r.stderr,
          "--static-dir naming no page: start-up fails naming the flag (%r)" % r.stderr[-160:])


def sio_frames(ws, n, timeout=5, pong=True):
    """The next n text frames (strings); None for a close, EOF or a timeout
    (ws.timed_out says which). WebSocket pings are answered with their
    payload as every WebSocket stack does (a browser, socket.io-client's
    ws), unless pong is False."""
    out = []
    ws.timed_out = False
    while len(out) < n:
        try:
            op, payload = ws.recv_frame(timeout)
        except socket.timeout:
            ws.timed_out = True
            return out + [None]
        except (OSError, Exception):  # EOF: the caller checks
            return out + [None]
        if op == 8:
            ws.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return out + [None]
        if op == 9 and pong:
            ws.send_frame(10, payload)
        if op == 1:
            out.append(payload.decode())
    return out


def sio_next(ws, timeout=5):
    """The next frame that is not a ping, answering pings on the way; None
    when none came within the timeout (pings do not extend it)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        f = sio_frames(ws, 1, left)[0]
        if f != "2":
            return f
        ws.send_frame(1, b"3")


def sio_error(frame):
    """The data of a 42["error", data] frame."""
    return json.loads(frame[2:])[1]


def case_socketio(work):
    # Pings every 0.3 s, 2 s to answer: quick, with room for a loaded machine.
    s = Server(os.path.join(work, "data"), "--sio-ping-interval", "0.3", "--sio-ping-timeout", "2",
               "--ws-sndbuf-kb", "4")
    for query, code, what in [("EIO=4&transport=polling", 0, "polling"), ("EIO=3&transport=websocket", 5, "EIO=3"),
                              ("transport=websocket", 5, "no EIO"),
                              ("EIO=4&transport=websocket&sid=abc", 1, "an upgrade with a sid")]:
        st, _, body = raw_request(s.port, "/socket.io/?" + query)
        b = json.loads(body)
        check(st == 400 and b["code"] == code and b["message"], "%s: 400 {code %d, %s}" % (what, code, b["message"]))
    st, _, body = raw_request(s.port, "/socket.io/?EIO=4&transport=websocket")
    check(st == 400 and b"WebSocket upgrade" in body, "no upgrade headers: 400 naming the WebSocket upgrade")

    ws = WS(s.port, path="/socket.io/?EIO=4&transport=websocket")
    check(ws.status == 101, "the websocket handshake: 101")
    first = sio_frames(ws, 1)[0]
    o = json.loads(first[1:])
    check(first[0] == "0" and len(o["sid"]) == 36 and o["upgrades"] == [] and o["pingInterval"] == 300
          and o["pingTimeout"] == 2000, "the open packet: sid, no upgrades, the heartbeat (%s)" % first)
    # Before CONNECT: refused, and told so (docs/api.md).
    ws.send_frame(1, b'42["subscribe_job",{"job_id":"123e4567-e89b-42d3-a456-426614174000"}]')
    reply = sio_next(ws)
    check(reply and reply.startswith('42["error",{"message":"an EVENT before CONNECT')
          and sio_error(reply).get("code") == "not_connected",
          "an EVENT before CONNECT: an error event, code not_connected (%s)" % reply)
    ws.send_frame(1, b"40")
    got = [sio_next(ws), sio_next(ws)]
    check(got[0] == '40{"sid":"%s","pid":"%s"}' % (o["sid"], o["sid"]) and got[1].startswith('42["connected",'),
          "CONNECT to /: 40{sid, pid}, then the connected event")
    # Each an error event with its code (docs/api.md) beside the message.
    for bad, code in [(b'42["launch"]', "unknown_event"),
                      (b'451-["subscribe_job",{"_placeholder":true,"num":0}]', "binary_packet"), (b"x", "bad_packet"),
                      (b'42["subscribe_job",{}]', "bad_job_id"), (b'42["subscribe_job"', "bad_json"),
                      (b'42{"subscribe_job":1}', "bad_message")]:
        ws.send_frame(1, bad)
        reply = sio_next(ws)
        d = sio_error(reply) if reply and reply.startswith('42["error"') else {}
        check(d.get("code") == code and d.get("message") and "job_id" not in d,
              "%s: an error event, code %s (%s)" % (bad.decode(), code, reply))
    # A binary WebSocket frame: an error event with /ws's code (it was
    # counted and never answered).
    ws.send_frame(2, b"\x00\x01")
    reply = sio_next(ws)
    d = sio_error(reply) if reply and reply.startswith('42["error"') else {}
    check(d.get("code") == "binary_frame" and d.get("message") and "job_id" not in d,
          "a binary frame: an error event, code binary_frame (%s)" % reply)
    # A CONNECT to a namespace that does not exist: CONNECT_ERROR as the
    # official server writes it ({"message", "data"}), the code in data.
    # A namespace with a NUL in it is not "/" (until 2026-12-03 its name
    # was read as a C string, "/", and a CONNECT or an EVENT to it acted on
    # "/"): CONNECT_ERROR to it, its name written back byte for byte, as
    # the official server does; an EVENT to it is one before its CONNECT.
    for nsp, says in (("/admin", "/admin"), ("/\x00admin", "control character")):
        ws.send_frame(1, b"40%s," % nsp.encode())
        reply = sio_next(ws)
        head = "44%s,{" % nsp
        e = json.loads(reply[len(head) - 1:]) if reply and reply.startswith(head) else {}
        check(e.get("message") == "Invalid namespace" and e.get("data", {}).get("code") == "unknown_namespace"
              and says in e["data"].get("message", ""),
              "CONNECT to %r: 44%r,{message, data {code unknown_namespace}} (%r)" % (nsp, nsp, reply))
    ws.send_frame(1, b'42/\x00admin,7["subscribe_job",{"job_id":"123e4567-e89b-42d3-a456-426614174000"}]')
    reply = sio_next(ws)
    check(reply and reply.startswith('42["error"') and sio_error(reply).get("code") == "not_connected",
          "an EVENT to /\\0admin: an error event, code not_connected, no ack (%r)" % reply)
    # The heartbeat: a ping arrives; it is never answered, so the server
    # closes the connection within the timeout (sio_frames' deadline: 8 s
    # for the ping interval 0.3 s + the timeout 2 s; no measured time).
    frames = sio_frames(ws, 50, timeout=8, pong=False)
    check("2" in frames and frames[-1] is None and not ws.timed_out,
          "a ping, unanswered: the server closes within 8 s (%s)" % frames)
    ws.sock.close()

    # A client that answers pings stays; its close packet closes cleanly.
    ws = WS(s.port, path="/socket.io/")  # the query is required: 400
    check(ws.status == 400, "/socket.io/ without a query: 400")
    ws.sock.close()
    ws = WS(s.port, path="/socket.io/?EIO=4&transport=websocket")
    sio_frames(ws, 1)
    ws.send_frame(1, b"40")
    sio_frames(ws, 2)
    pongs = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        f = sio_frames(ws, 1, timeout=5)[0]
        check(f is not None, "a client answering pings is not closed")
        if f == "2":
            ws.send_frame(1, b"3")
            pongs += 1
    check(pongs >= 3, "%d pings answered over 1.5 s, still connected" % pongs)
    ws.send_frame(1, b"1")
    check(sio_frames(ws, 5)[-1] is None and ws.close_code == 1000, "the close packet: closed with 1000")
    ws.sock.close()

    # The close packet from a client that has not read its answers yet
    # (a 4 KiB window, --ws-sndbuf-kb 4: the socket buffers are full): the
    # close frame (1000) is still sent, once the client reads, before the
    # TCP close (RFC 6455 5.5.1, 7.1.1). Until 2026-12-03 the connection
    # was closed on the turn the "1" came: when the kernel did not take
    # the rest of a half-sent answer on that turn (wslay sends the close
    # after it), the client read its answers, then EOF. Whether it takes
    # those bytes depends on where the answers' bytes fell (about one
    # client in three failed), so 8 clients, each with answers of another
    # length: 300 CONNECT_ERRORs of ~200-260 bytes, more than the buffers
    # hold, fewer than the hub's cap (2 x --ws-queue); counted, and the
    # "1" waits for the count, so it comes on a later turn than they.
    bad = lambda: value(parse_metrics(s.metrics()[2]), "orfeas_errors_total", type="bad_message",
                        endpoint="/socket.io/")
    for k in range(8):
        before = bad()
        ws = WS(s.port, path="/socket.io/?EIO=4&transport=websocket", rcvbuf=4096)
        sio_frames(ws, 1)
        ws.send_frame(1, b"40")
        for _ in range(300):
            ws.send_frame(1, b"40/%s," % (b"n" * (62 - 3 * k)))
        check_within(lambda: bad() == before + 300, "client %d: 300 CONNECTs read and answered" % k, timeout=10)
        ws.send_frame(1, b"1")
        ws.close_code = None
        frames = sio_frames(ws, 1000, timeout=10)
        check(frames[-1] is None and not ws.timed_out and ws.close_code == 1000,
              "client %d: the close packet behind unread answers: %d frames, then the close frame 1000 (%s)"
              % (k, len(frames) - 1, ws.close_code))
        ws.sock.close()

    # A client that never reads but sends Engine.IO's pong "3" every 0.1 s
    # answers no ping (a "3" names none): closed as idle all the same.
    # (It keeps sending while the check waits: one that stopped would be
    # closed for that.)
    ws = WS(s.port, path="/socket.io/?EIO=4&transport=websocket", rcvbuf=4096)
    stop = threading.Event()

    def pong_on_a_timer():
        try:
            while not stop.wait(0.1):  # the client's pace
                ws.send_frame(1, b"3")
        except OSError:  # the server closed it
            pass
    t = threading.Thread(target=pong_on_a_timer, daemon=True)
    t.start()
    idle = lambda: value(parse_metrics(s.metrics()[2]), "orfeas_websocket_disconnections_total", reason="idle")
    check_within(lambda: idle() == 2, "a client sending \"3\" on a timer, never reading: closed as idle",
                 timeout=10)
    stop.set()
    t.join(timeout=5)
    ws.sock.close()

    sm = parse_metrics(s.metrics()[2])
    check(value(sm, "orfeas_errors_total", type="ws_timeout", endpoint="/socket.io/") == 2,
          "errors_total{ws_timeout, /socket.io/} = 2")
    check(value(sm, "orfeas_errors_total", type="bad_message", endpoint="/socket.io/") == 2411,
          "errors_total{bad_message, /socket.io/} = 2411 (7 bad packets, 1 binary frame, 2402 unknown namespaces, "
          "1 EVENT to one)")
    for et, n in [("transport", 1), ("version", 3), ("sid", 1)]:  # version: also the bare /socket.io/
        check(value(sm, "orfeas_validation_errors_total", field="socketio", error_type=et) == n,
              "validation_errors_total{socketio, %s} = %d" % (et, n))
    check(s.stop() == 0, "exit 0")


def preflight(s, path, origin, method="POST", req_headers="content-type"):
    return s.request("OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                               "Access-Control-Request-Headers": req_headers})


def case_cors(work):
    ok_origin, evil = "http://localhost:8000", "http://evil.example"
    s = Server(os.path.join(work, "data"), "--cors-origins", "http://localhost:8000, https://studio.example")
    # The original pages' preflights: synexa's custom header, generate's JSON.
    for path, method, asked in [("/api/upload-image", "POST", "ngrok-skip-browser-warning"),
                                ("/api/generate-3d", "POST", "content-type,ngrok-skip-browser-warning"),
                                ("/api/models-info", "GET", "cache-control,pragma,ngrok-skip-browser-warning"),
                                ("/api/job-status/00000000-0000-4000-8000-000000000000", "GET", "")]:
        st, hd, body = preflight(s, path, ok_origin, method, asked)
        allow_h = hd.get("access-control-allow-headers", "").lower()
        check(st == 204 and hd.get("access-control-allow-origin") == ok_origin and
              method in hd.get("access-control-allow-methods", "") and
              all(h in allow_h for h in ["content-type", "cache-control", "pragma", "ngrok-skip-browser-warning"])
              and "origin" in hd.get("vary", "").lower() and "access-control-allow-credentials" not in hd,
              "preflight %s %s from an allowed origin: 204 with its methods and headers, no credentials" % (method, path))
        st, hd, body = preflight(s, path, evil, method, asked)
        check(st == 403 and "access-control-allow-origin" not in hd and json.loads(body)["error"],
              "preflight %s from a refused origin: 403 JSON, no ACAO" % path)
    st, hd, _ = s.request("OPTIONS", "/api/generate-3d")
    check(st == 204 and hd.get("allow") == "POST, OPTIONS", "a plain OPTIONS: 204 with Allow")
    st, hd, _ = preflight(s, "/metrics", ok_origin, "GET")
    check(st == 403 and "access-control-allow-origin" not in hd, "no CORS outside /api/: a preflight on /metrics is 403")

    st, hd, _ = s.request("GET", "/api/health", headers={"Origin": "https://studio.example"})
    check(st == 200 and hd.get("access-control-allow-origin") == "https://studio.example"
          and "Retry-After" in hd.get("access-control-expose-headers", "") and "origin" in hd.get("vary", "").lower(),
          "GET from an allowed origin: ACAO echoes it, Retry-After exposed, Vary: Origin")
    st, hd, _ = s.request("GET", "/api/health", headers={"Origin": evil})
    check(st == 200 and "access-control-allow-origin" not in hd and "origin" in hd.get("vary", "").lower(),
          "GET from another origin: no ACAO (the browser withholds it), Vary: Origin")
    st, hd, _ = s.request("GET", "/api/job-status/not-a-uuid", headers={"Origin": ok_origin})
    check(st == 400 and hd.get("access-control-allow-origin") == ok_origin,
          "an error answer carries ACAO too (the page can read the message)")
    # WebSockets: the page's origin, this server's own, none; others 403.
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket"]:
        for origin, want in [(ok_origin, 101), ("http://127.0.0.1:%d" % s.port, 101), (None, 101), (evil, 403)]:
            w = WS(s.port, path=path, headers="Origin: %s\r\n" % origin if origin else "")
            check(w.status == want, "%s from origin %s: %d" % (path.split("?")[0], origin, want))
            if w.status == 101:
                w.close()
            else:
                w.sock.close()
    sm = parse_metrics(s.metrics()[2])
    check(value(sm, "orfeas_errors_total", type="cors_refused", endpoint="/ws") == 1 and
          value(sm, "orfeas_errors_total", type="cors_refused", endpoint="/api/upload-image") == 1,
          "refusals counted in errors_total{type=cors_refused}")
    # Writes from a page of another origin. A form's multipart POST, or JSON
    # sent as text/plain, is a "simple" request: the browser sends it with no
    # preflight and only hides the answer, so any web page its user visits
    # could fill the store. Refused before anything is stored; the page's
    # own origin, an allowed one and clients that send no Origin go through.
    img = make_image("png", 64, os.path.join(work, "simple.png"))
    body, ct = multipart({"image": ("simple.png", img)})
    ids = []
    for origin in [ok_origin, "http://127.0.0.1:%d" % s.port, None]:
        h = {"Content-Type": ct}
        if origin:
            h["Origin"] = origin
        st, _, up = s.json("POST", "/api/upload-image", body, h)
        check(st == 200 and up.get("job_id"), "upload from origin %s: 200 (%d)" % (origin, st))
        ids.append(up["job_id"])
    for origin in [evil, "null", "http://127.0.0.1:%d" % (s.port + 1)]:
        st, hd, b = s.json("POST", "/api/upload-image", body, {"Content-Type": ct, "Origin": origin})
        check(st == 403 and b.get("error") and "access-control-allow-origin" not in hd,
              "upload from origin %s (a simple request): 403, no ACAO (%d)" % (origin, st))
        st, _, b = s.json("POST", "/api/generate-3d", json.dumps({"job_id": ids[0], "format": "stl"}),
                          {"Content-Type": "text/plain", "Origin": origin})
        check(st == 403 and b.get("error"), "generate-3d as text/plain from origin %s: 403 (%d)" % (origin, st))
    _, _, health = s.json("GET", "/api/health")
    check(health["jobs"]["uploaded"] == len(ids) and s.status(ids[0])["status"] == "uploaded",
          "the refused writes stored nothing and started nothing (%s)" % health["jobs"])
    sm = parse_metrics(s.metrics()[2])
    check(value(sm, "orfeas_errors_total", type="cors_refused", endpoint="/api/upload-image") == 4 and
          value(sm, "orfeas_errors_total", type="cors_refused", endpoint="/api/generate-3d") == 4,
          "refused writes counted in errors_total{type=cors_refused}")
    # Refused with its headers: a client that waits for 100 Continue is
    # answered before it sends its body; a browser's body (sent at once) is
    # discarded as it comes, never kept in memory or a file.
    st, head, _ = raw_request(s.port, "/api/upload-image", "POST",
                              "Origin: %s\r\nExpect: 100-continue\r\nContent-Type: %s\r\n"
                              "Content-Length: 2000000\r\n" % (evil, ct))
    check(st == 403 and "100 Continue" not in head, "Expect: 100-continue from another origin: 403 before the body")
    kept = lambda sm: total(sm, "orfeas_http_request_bodies_total")
    before = kept(sm)
    big, big_ct = multipart({"image": ("big.png", img + b"\0" * 3000000)})
    st, _, b = s.json("POST", "/api/upload-image", big, {"Content-Type": big_ct, "Origin": evil})
    sm = parse_metrics(s.metrics()[2])
    check(st == 403 and kept(sm) == before, "a 3 MB body from another origin: 403, the body kept nowhere (%d, %s -> %s)"
          % (st, before, kept(sm)))
    check(s.stop() == 0, "exit 0")
    # ... and before its client's rate-limit token: a page of another origin
    # cannot spend its visitor's requests.
    s = Server(os.path.join(work, "data_rl"), "--rate-limit", "0.1", "--rate-burst", "2")
    for _ in range(4):
        st, _, _ = s.json("POST", "/api/upload-image", body, {"Content-Type": ct, "Origin": evil})
        check(st == 403, "a rate-limited server: an upload from another origin is 403 (%d)" % st)
    for k in range(2):
        st, _, _ = s.json("POST", "/api/upload-image", body, {"Content-Type": ct})
        check(st == 200, "... and the client's own uploads still have their tokens: 200 (%d: %d)" % (k, st))
    check(s.stop() == 0, "exit 0")

    s = Server(os.path.join(work, "data2"))
    st, hd, _ = s.request("GET", "/api/health", headers={"Origin": ok_origin})
    check("access-control-allow-origin" not in hd, "default (no --cors-origins): same-origin only, no ACAO")
    st, _, _ = preflight(s, "/api/upload-image", ok_origin)
    check(st == 403, "default: a preflight is 403")
    check(s.stop() == 0, "exit 0")
    s = Server(os.path.join(work, "data3"), "--cors-origins", "*")
    st, hd, _ = s.request("GET", "/api/health", headers={"Origin": evil})
    check(hd.get("access-control-allow-origin") == "*" and "access-control-allow-credentials" not in hd,
          "--cors-origins '*': ACAO * (never with credentials)")
    st, _, _ = s.json("POST", "/api/upload-image", body, {"Content-Type": ct, "Origin": evil})
    check(st == 200, "--cors-origins '*': an upload from any origin is taken (%d)" % st)
    check(s.stop() == 0, "exit 0")
    r = subprocess.run([ORFEASD, "--cors-origins", "localhost:8000"], stderr=subprocess.PIPE,
                       stdout=subprocess.DEVNULL, timeout=30)
    check(r.returncode == 2 and b"--cors-origins" in r.stderr, "a bad origin: exit 2 naming the flag")


def handshake(port, path, host, origin):
    """A WebSocket handshake with this Host and Origin (a page at `origin`
    whose name now points at 127.0.0.1); the status code."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, origin, key)).encode())
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    return int(buf.split(b" ")[1]) if buf.startswith(b"HTTP/1.1 ") else buf


def case_hosts(work):
    # The default on a loopback --listen: loopback names only. The admin
    # listener (also on loopback) follows the same rule.
    s = Server(os.path.join(work, "data"), "--admin-listen", "127.0.0.1:0")
    port, aport = s.port, admin_port(s)
    rebound = "attacker.example:%d" % port
    page = "http://" + rebound  # its pages' Origin: the same, to the browser
    refused = [("GET", "/api/health"), ("GET", "/api/job-status/00000000-0000-4000-8000-000000000000"),
               ("GET", "/api/models-info"), ("GET", "/"), ("GET", "/static/studio.js"),
               ("GET", "/socket.io/?EIO=4&transport=polling"), ("OPTIONS", "/api/upload-image")]
    for method, path in refused:
        st, hd, b = s.request(method, path, headers={"Host": rebound, "Origin": page})
        msg = json.loads(b).get("error", "") if hd.get("content-type") == "application/json" else b
        check(st == 403 and msg == 'Host "%s" is not one this server answers to: add it to --allowed-hosts' % rebound,
              "%s %s with a rebound Host (%s): 403 JSON naming the Host and the flag (%d %r)"
              % (method, path, rebound, st, msg))
    for path in ["/ws", "/socket.io/?EIO=4&transport=websocket"]:
        got = handshake(port, path, rebound, page)
        check(got == 403, "a WebSocket upgrade of %s with a rebound Host and its own Origin: 403 (%r)"
              % (path.split("?")[0], got))
    # An upload sent at once (as a browser's fetch, or nginx with a buffered
    # body, sends it): its body is read and dropped, the 403 arrives (not a
    # reset), and nothing is stored.
    img = make_image("png", 64, os.path.join(work, "h.png"))
    body, ct = multipart({"image": ("h.png", img + os.urandom(2 << 20))})
    st, _, b = s.request("POST", "/api/upload-image", body, {"Content-Type": ct, "Host": rebound, "Origin": page})
    check(st == 403 and "--allowed-hosts" in json.loads(b)["error"],
          "an upload (2 MB, sent at once) with a rebound Host: 403 (%d %r)" % (st, b[:100]))
    got = raw_http10(port, "POST /api/upload-image HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                           "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (rebound, ct, len(body)))
    check(got.startswith(b"HTTP/1.1 403"), "an upload that waits for 100 Continue: 403 before its body (%r)"
          % got[:40])
    # Loopback names pass: any case, any port or none, a trailing dot.
    for host in ["127.0.0.1:%d" % port, "localhost:%d" % port, "LOCALHOST:%d" % port, "localhost",
                 "localhost.:%d" % port, "studio.localhost:%d" % port, "127.0.0.2:%d" % port, "[::1]:%d" % port]:
        st, _, _ = s.request("GET", "/api/health", headers={"Host": host})
        check(st == 200, "Host %s: 200 (%d)" % (host, st))
    got = handshake(port, "/ws", "localhost:%d" % port, "http://localhost:%d" % port)
    check(got == 101, "a WebSocket upgrade from the page at http://localhost:%d: 101 (%r)" % (port, got))
    # Names that merely look local are rebinding names.
    for host in ["localhost.attacker.example:%d" % port, "127.0.0.1.nip.io:%d" % port,
                 "attacker.example", "[::2]:%d" % port, "localhost:x"]:
        st, _, _ = s.request("GET", "/api/health", headers={"Host": host})
        check(st == 403, "Host %s: 403 (%d)" % (host, st))
    got = raw_http10(port, "GET /api/health HTTP/1.0\r\n\r\n")
    check(got.startswith(b"HTTP/1.1 200") or got.startswith(b"HTTP/1.0 200"),
          "HTTP/1.0 without a Host (not a browser): 200 (%r)" % got[:40])
    # The admin listener: a scrape of 127.0.0.1 passes, a rebound page's
    # read of /metrics does not.
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=30)
    c.request("GET", "/metrics", headers={"Host": "attacker.example:%d" % aport})
    r = c.getresponse()
    check(r.status == 403 and b"--allowed-hosts" in r.read(), "/metrics on the admin listener with a rebound "
          "Host: 403 (%d)" % r.status)
    c.close()
    c = http.client.HTTPConnection("127.0.0.1", aport, timeout=30)
    c.request("GET", "/metrics")
    r = c.getresponse()
    sm = parse_metrics(r.read().decode())
    c.close()
    check(r.status == 200, "/metrics on the admin listener with Host 127.0.0.1:%d: 200" % aport)
    n = len(refused) + 2 + 2 + 5 + 1
    check(value(sm, "orfeas_errors_total", type="host_refused", endpoint="/api/health") == 1 + 5 and
          value(sm, "orfeas_errors_total", type="host_refused", endpoint="/ws") == 1 and
          value(sm, "orfeas_errors_total", type="host_refused", endpoint="/api/upload-image") == 3 and
          total(sm, "orfeas_errors_total", type="host_refused") == n,
          "every refusal counted in orfeas_errors_total{type=host_refused} under its route (%d in all)" % n)
    check(value(sm, "orfeas_http_requests_total", method="POST", endpoint="/api/upload-image", status="403") == 2 and
          exposed(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/health", status="403") == 6,
          "and in orfeas_http_requests_total as 403s")
    _, _, health = s.json("GET", "/api/health")
    check(health["jobs"]["uploaded"] == 0 and os.listdir(os.path.join(work, "data", "tmp")) == [],
          "the refused uploads stored nothing (%s)" % health["jobs"])
    lines = [ln for ln in s.lines if "refused a request for Host" in ln]
    check(len(lines) == 1 and rebound in lines[0] and "--allowed-hosts" in lines[0],
          "the first refusal is logged once, naming the Host and the flag (%s)" % lines)
    check(s.stop() == 0, "exit 0")

    # A list (here from the environment): its names pass, port and case
    # aside; loopback names still do; others are refused.
    s = Server(os.path.join(work, "data2"), env={"ORFEAS_ALLOWED_HOSTS": "studio.example, 192.0.2.10,[2001:db8::1]"})
    port = s.port
    for host, want in [("studio.example:%d" % port, 200), ("Studio.Example", 200), ("192.0.2.10:%d" % port, 200),
                       ("[2001:DB8:0::1]:%d" % port, 200), ("localhost:%d" % port, 200),
                       ("127.0.0.1:%d" % port, 200), ("other.example:%d" % port, 403),
                       ("studio.example.attacker.example", 403), ("192.0.2.11:%d" % port, 403)]:
        st, _, _ = s.request("GET", "/api/health", headers={"Host": host})
        check(st == want, "ORFEAS_ALLOWED_HOSTS=studio.example,...: Host %s: %d (%d)" % (host, want, st))
    got = handshake(port, "/ws", "studio.example:%d" % port, "http://studio.example:%d" % port)
    check(got == 101, "a WebSocket from the page at http://studio.example:%d: 101 (%r)" % (port, got))
    check(s.stop() == 0, "exit 0")
    # "*": any Host (the defence off).
    s = Server(os.path.join(work, "data3"), "--allowed-hosts", "*")
    st, _, _ = s.request("GET", "/api/health", headers={"Host": "attacker.example:%d" % s.port})
    check(st == 200, "--allowed-hosts '*': any Host passes (%d)" % st)
    check(s.stop() == 0, "exit 0")
    for bad, why in [("http://studio.example", "not a URL"), ("studio.example:443", "without its port"),
                     ("*.example", "wildcard"), ("a b", "not valid")]:
        r = subprocess.run([ORFEASD, "--allowed-hosts", bad], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           timeout=30)
        check(r.returncode == 2 and b"--allowed-hosts" in r.stderr and why.encode() in r.stderr,
              "--allowed-hosts %r: exit 2, naming the flag and what is wrong (%d %r)" % (bad, r.returncode, r.stderr))
    r = subprocess.run([ORFEASD, "--help"], stdout=subprocess.PIPE, timeout=30)
    check(b"--allowed-hosts" in r.stdout and b"ORFEAS_ALLOWED_HOSTS" in r.stdout, "--help lists --allowed-hosts")


def raw_http10(port, text):
    """One request as written; the answer's bytes (up to its headers)."""
    sk = socket.create_connection(("127.0.0.1", port), timeout=10)
    sk.sendall(text.encode("latin-1"))
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sk.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    sk.close()
    return buf


def case_routes(work):
    s = Server(os.path.join(work, "data"), "--max-upload-mb", "2", "--workers", "1")
    st, hd, info = s.json("GET", "/api/models-info", headers={"Cache-Control": "no-cache", "Pragma": "no-cache",
                                                              "ngrok-skip-browser-warning": "1"})
    check(st == 200 and "application/json" in hd["content-type"] and info["device"],
          "models-info: 200 JSON with a truthy device (%s)" % info.get("device"))
    check(info["formats"] == ["stl", "obj", "ply", "glb"] and info["input_types"] == ["png", "jpeg", "webp", "gif", "bmp"]
          and len(info["stages"]) == 7 and info["limits"]["max_upload_mb"] == 2
          and info["limits"]["dimensions_mm"]["depth"]["max"] == 500 and info["limits"]["quality"]["max"] == 10
          and "count" in info["gpu"], "models-info: formats, input types, 7 stages, limits from the flags, the GPU summary")
    st, _, _ = s.json("POST", "/api/models-info", {})
    check(st == 405, "POST /api/models-info: 405")

    img = make_image("png", 96, os.path.join(work, "star.png"))
    st, _, up = s.upload(img, "star.png")
    jid = up["job_id"]
    check(st == 200 and up["preview_url"] == "/api/preview/" + jid, "upload: preview_url names the job's preview")
    st, hd, body = s.request("GET", up["preview_url"])
    check(st == 200 and body == img and hd["content-type"] == "image/png" and hd["x-content-type-options"] == "nosniff"
          and "sandbox" in hd["content-security-policy"], "preview: the upload's own bytes, image/png, nosniff, sandboxed")
    gif = make_image("gif", 64, os.path.join(work, "star.gif"))
    st, _, up2 = s.upload(gif, "star.gif")
    st, hd, body = s.request("GET", up2["preview_url"])
    check(st == 200 and body == gif and hd["content-type"] == "image/gif", "preview of a GIF upload: image/gif")
    for path, code in [("/api/preview/not-a-uuid", 400), ("/api/preview/00000000-0000-4000-8000-000000000000", 404),
                       ("/api/preview/..%2f..%2fetc%2fpasswd", 400), ("/api/preview/" + jid + "/x", 400),
                       ("/api/preview/", 400)]:
        st, _, b = s.json("GET", path)
        check(st == code and b.get("error"), "%s: %d JSON" % (path[:48], code))

    # The original pages' generate bodies (synexa: obj with dimensions 256;
    # orfeas-studio: stl 100x100x20, quality 7); unknown fields ignored.
    st, _, g = s.generate(jid, "obj", quality=7, dimensions={"width": 256, "height": 256, "depth": 256},
                          method="orfeas", mesh_format="obj")
    check(st == 202, "synexa's generate body with extra fields: 202")
    done = s.wait_job(jid)
    check(done["status"] == "completed" and done["step"] == done["stage"] and done["message"],
          "the job completes; job-status has the original's step and message (%s)" % done["message"])
    name = done["output_file"]
    st, hd, model = s.request("GET", done["download_url"])
    # Every answer says its type is the type (the original sent nosniff on
    # all of them): an OBJ or PLY is text a browser would otherwise guess at.
    check(st == 200 and hd["content-type"] == "model/obj" and hd.get("x-content-type-options") == "nosniff"
          and hd["content-disposition"] == 'attachment; filename="%s"' % name,
          "download: model/obj, an attachment, nosniff (%s)" % hd.get("x-content-type-options"))
    for path in ["/api/download-base64/%s/%s" % (jid, name), "/api/job-status/" + jid, "/api/job-status/x",
                 "/api/models-info", "/api/nothing-here", "/health"]:
        st, hd, _ = s.request("GET", path)
        check(hd.get("x-content-type-options") == "nosniff", "%s (%d): nosniff" % (path[:40], st))
    st, hd, b64 = s.json("GET", "/api/download-base64/%s/%s" % (jid, name))
    data = base64.b64decode(b64["data"])
    check(st == 200 and b64["status"] == "success" and b64["filename"] == name and data == model
          and b64["original_size"] == len(model) and b64["encoded_size"] == len(b64["data"]),
          "download-base64: the download's bytes, with sizes (%d -> %d)" % (len(model), len(b64["data"])))
    for path, code in [("/api/download-base64/%s/model_%s.stl" % (jid, jid), 404),
                       ("/api/download-base64/%s/..%%2f..%%2fetc%%2fpasswd" % jid, 400),
                       ("/api/download-base64/%s/.hidden" % jid, 400),
                       ("/api/download-base64/not-a-uuid/%s" % name, 400),
                       ("/api/download-base64/%s/%s" % (up2["job_id"], name), 404),
                       ("/api/download-base64/" + "a" * 300, 400)]:
        st, _, b = s.json("GET", path)
        check(st == code and b.get("error"), "%s: %d JSON" % (path[:60], code))
    sm = parse_metrics(s.metrics()[2])
    check(value(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/download-base64/{job_id}/{filename}",
                status="200") == 2 and
          value(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/preview/{job_id}", status="200") == 2 and
          value(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/models-info", status="200") == 2,
          "the new routes are counted under their templates")
    check(s.stop() == 0, "exit 0")


if __name__ == "__main__":
    main({"static": case_static, "socketio": case_socketio, "cors": case_cors, "hosts": case_hosts,
          "routes": case_routes})
