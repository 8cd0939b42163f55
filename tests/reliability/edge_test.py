#!/usr/bin/python3
"""The HTTP edge under attack (issue #13): one case per attack family, each a
few seconds at a scaled-down size (ORFEAS_ATTACK_SCALE=full: the sizes the
issue quotes, by hand). During each attack a normal client (127.0.0.1) still
gets /health and one full job with every request answered within 1 s, RSS
stays within a stated bound, and the attacker is cut off and counted.

Usage: edge_test.py CASE WORKDIR  (ctest runs each as reliability.edge_CASE)

  slow      slowloris headers, idle connections and slow bodies from other
            addresses: the header deadline, the body rate and the
            per-address limit cut them; --admin-listen keeps /health and
            /metrics answering while the public listener is full
  bodies    clients that send most of a big upload and stop: bodies wait in
            DATA/tmp, not RAM; the in-flight budget answers 503; the files
            go on abort and at start-up
  protocol  Content-Length with Transfer-Encoding, two lengths, control
            bytes in the path: 400, closed, no hidden second request;
            truncated or corrupt images: 400 with a reason
  fds       start-up under a low RLIMIT_NOFILE: raised or refused with the
            numbers; out of descriptors at run time: 503 and a metric,
            never 404 or "gone"
  proxy     --trusted-proxies: X-Forwarded-For believed only from them, the
            rightmost untrusted address keys the rate limit
"""
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import time

from rellib import (DEADLINE, FULL, ORFEASD, Attack, Server, TestFailure, admin_port, check, check_within,
                    closed_by_server, main, make_image, multipart, normal_client, raw, request,
                    exposed, rss_bound, rss_kb, samples, value, wait_for)


def closed(sm, reason):
    return value(sm, "orfeas_http_connections_closed_total", reason=reason)


# ---- slow and idle clients ---------------------------------------------------

def holders(atk, port, source, n, tick, trickle):
    """n connections from source that never finish a request: with trickle,
    each sends a header byte every `tick` seconds (slowloris), else nothing
    (idle). Those the server closes are opened again."""
    conns = []
    while not atk.stopping.is_set():
        conns = [c for c in conns if not closed_by_server(c)]
        while len(conns) < n and not atk.stopping.is_set():
            c = atk.connect(port, source)
            if c is None:
                break
            if trickle:
                try:
                    c.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nX-a: ")
                except OSError:
                    continue
            conns.append(c)
            atk.attempts += 1
        for c in conns if trickle else []:
            try:
                c.sendall(b"a")
            except OSError:
                pass
        atk.stopping.wait(tick)


def slow_bodies(atk, port, source, n, rate):
    """n uploads that declare 1 MB and send `rate` bytes/s."""
    conns = []
    for _ in range(n):
        c = atk.connect(port, source)
        if c is None:
            continue
        c.sendall(b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n\r\n")
        conns.append(c)
    while not atk.stopping.is_set():
        for c in conns:
            try:
                c.sendall(b"x" * max(1, rate // 10))
            except OSError:
                pass
        atk.stopping.wait(0.1)
    atk.cut = sum(closed_by_server(c, 0.05) for c in conns)


def case_slow(work):
    img = make_image("png", 64, os.path.join(work, "n.png"))
    if FULL:  # issue #13: 1,100 slowloris (~110 bytes/s in all), 2,000 idle
        flags, addrs, loris, idle, tick, seconds = [], 1, 1100, 2000, 10.0, 25
    else:
        flags = ["--header-timeout", "1", "--max-conns-per-address", "16",
                 "--max-connections", "64", "--body-min-rate", "2000"]
        addrs, loris, idle, tick, seconds = 3, 75, 75, 0.25, 2.0
    # No memory tier in the result cache: the normal client's models would
    # grow RSS, and RSS here measures what the attack costs.
    s = Server(os.path.join(work, "data"), "--admin-listen", "127.0.0.1:0", "--workers", "1",
               "--cache-memory-mb", "0", *flags)
    aport = admin_port(s)
    atk = Attack()
    atk.attempts = 0
    try:
        normal_client(s, img, health_port=aport)  # warm: first-job costs out of the way
        rss0 = rss_kb(s.proc.pid)
        for a in range(addrs):
            src = "127.0.0.%d" % (2 + a)
            atk.spawn(holders, atk, s.port, src, loris // addrs, tick, True)
            atk.spawn(holders, atk, s.port, src, idle // addrs, tick, False)
        atk.spawn(slow_bodies, atk, s.port, "127.0.0.20", 4, 100)
        end = time.monotonic() + seconds
        rounds = 0
        while time.monotonic() < end or rounds < 2:
            time.sleep(0.3)
            normal_client(s, img, health_port=aport)
            rounds += 1
        rss1 = rss_kb(s.proc.pid)
        sm = samples(s, aport)
        open_pub = value(sm, "orfeas_http_connections_open", listener="public")
        atk.stop()
        check(atk.attempts > 0 and not atk.errors, "the attack ran (%d connections opened)" % atk.attempts)
        check(rss1 - rss0 < rss_bound(20 * 1024), "RSS grew %d KiB under the attack (bound %d MiB)"
              % (rss1 - rss0, rss_bound(20)))
        cap = (addrs * 16 + 4 + 8) if not FULL else 1024
        check(open_pub <= cap, "open public connections stayed bounded (%d <= %d)" % (open_pub, cap))
        check(closed(sm, "per_address_limit") > 0,
              "connections past --max-conns-per-address refused and counted (%g)" % closed(sm, "per_address_limit"))
        check(closed(sm, "header_timeout") > 0,
              "slow and idle header senders cut at --header-timeout and counted (%g)" % closed(sm, "header_timeout"))
        if not FULL:
            check(closed(sm, "body_too_slow") >= 4 and atk.cut == 4,
                  "4 slow bodies cut below --body-min-rate and counted (%g)" % closed(sm, "body_too_slow"))
        check(exposed(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/health", status="200") == 0,
              "no slowloris request was ever answered")
        wait_for(lambda: value(samples(s, aport), "orfeas_http_connections_open", listener="public") <= 1,
                 "the attackers' connections all closed", timeout=10)
    finally:
        atk.stop()
    check(s.stop() == 0, "exit 0")
    admin_capacity(work, img)


def admin_capacity(work, img):
    """The public listener full (idle connections past MHD's own limit):
    /health and /metrics still answer on --admin-listen."""
    s = Server(os.path.join(work, "data2"), "--admin-listen", "127.0.0.1:0", "--max-connections", "4",
               "--max-conns-per-address", "16", "--header-timeout", "3")
    aport = admin_port(s)
    atk = Attack()
    atk.attempts = 0
    try:
        for a in range(6):  # 96 connections; MHD holds 4 + 64
            atk.spawn(holders, atk, s.port, "127.0.0.%d" % (2 + a), 16, 0.2, False)
        wait_for(lambda: value(samples(s, aport), "orfeas_http_connections_open", listener="public") >= 68,
                 "the public listener to fill", timeout=10)
        for path in ("/health", "/ready", "/metrics"):
            st, _, _ = request(aport, "GET", path)
            check(st == 200, "public listener full: admin %s 200 within %.0fs" % (path, DEADLINE))
        try:  # MHD accepts no more: the connection waits in the backlog
            st = request(s.port, "GET", "/api/health", timeout=0.5)[0]
        except TestFailure:
            st = "not served"
        check(st in (429, "not served"), "public listener full: a public request is not served (%s)" % st)
    finally:
        atk.stop()
    check(s.stop() == 0, "exit 0")


# ---- bodies ----------------------------------------------------------------

def body_files(data_dir):
    d = os.path.join(data_dir, "tmp")
    return sorted(f for f in os.listdir(d) if f.startswith("body-")) if os.path.isdir(d) else []


def body_bytes(data_dir):
    d = os.path.join(data_dir, "tmp")
    return sum(os.path.getsize(os.path.join(d, f)) for f in body_files(data_dir))


def staller(atk, port, source, declared, send):
    """An upload that declares `declared` bytes, sends `send` of them at
    once, then stops sending (and holds the connection)."""
    c = atk.connect(port, source, timeout=10)
    if c is None:
        atk.errors.append("staller: refused")
        return
    c.sendall(b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % declared)
    chunk = b"y" * 65536
    left = send
    while left > 0 and not atk.stopping.is_set():
        c.sendall(chunk[:min(left, len(chunk))])
        left -= min(left, len(chunk))
    atk.stopping.wait(60)


def case_bodies(work):
    img = make_image("png", 64, os.path.join(work, "n.png"))
    data = os.path.join(work, "data")
    mb = 1 << 20
    if FULL:  # issue #13: 8 clients send 45 MB of a 49 MB body and stop
        flags, declared, send, bound = [], 49 * mb, 45 * mb, 40 * 1024
    else:  # the same shape at 1/12.5 of the size
        flags = ["--max-upload-mb", "4", "--max-body-inflight-mb", "32",
                 "--header-timeout", "2", "--body-min-rate", "5000"]
        declared, send, bound = 3900 * 1024, 3600 * 1024, 8 * 1024
    # 16 MB of bodies in memory, 2 MB at most each: the big stalled bodies
    # below go to files; the memory case after them fills the 16 MB.
    s = Server(data, "--workers", "1", "--cache-memory-mb", "0", "--body-memory-mb", "16", *flags)
    atk = Attack()
    try:
        normal_client(s, img)
        rss0 = rss_kb(s.proc.pid)
        for i in range(8):
            atk.spawn(staller, atk, s.port, "127.0.0.%d" % (2 + i), declared, send)
        check_within(lambda: len(body_files(data)) == 8 and body_bytes(data) >= 8 * send,
                     "8 uploads stalled after %d of %d bytes: their bodies wait in DATA/tmp" % (send, declared),
                     timeout=60 if FULL else 10)
        sm = samples(s)
        rss1 = rss_kb(s.proc.pid)
        bound = rss_bound(bound)
        check(rss1 - rss0 < bound, "RSS grew %d KiB, not the %d MiB the bodies hold (bound %d MiB)"
              % (rss1 - rss0, 8 * send // mb, bound // 1024))
        check(value(sm, "orfeas_http_request_body_inflight_bytes") == 8 * declared,
              "orfeas_http_request_body_inflight_bytes = 8 x %d" % declared)
        normal_client(s, img)
        if not FULL:
            got = raw(s.port, b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
                      b"boundary=x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % declared)
            check(got.startswith(b"HTTP/1.1 503") and b"\r\nRetry-After: " in got and b"max-body-inflight-mb" in got
                  and b"100 Continue" not in got,
                  "a 9th big upload past --max-body-inflight-mb: 503 with Retry-After, before its body")
            chunk = b"%x\r\n%s\r\n" % (65536, b"c" * 65536)
            got = raw(s.port, b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: multipart/form-data; boundary=x\r\n\r\n" + chunk * 48 + b"0\r\n\r\n",
                      timeout=5, until=b"\r\n\r\n")
            check(got.startswith(b"HTTP/1.1 503") and b"\r\nRetry-After: " in got,
                  "a chunked upload crossing the budget: read to its end, not stored, 503")
            check(value(samples(s), "orfeas_http_request_body_rejections_total") == 2,
                  "both counted in orfeas_http_request_body_rejections_total")
        # Stalled: cut at the body rate, and their files go with them.
        wait_for(lambda: value(samples(s), "orfeas_http_connections_closed_total", reason="body_too_slow") == 8,
                 "the 8 stalled uploads cut below --body-min-rate", timeout=60 if FULL else 10)
        wait_for(lambda: body_files(data) == [], "their body files deleted", timeout=10)
        check(exposed(samples(s), "orfeas_http_request_body_inflight_bytes") == 0, "the body budget is all back")
        # Bodies of at most 2 MB wait in memory while --body-memory-mb has
        # room: 8 of 1.9 MB fit in 16 MB, the 9th goes to a file.
        kept0 = value(samples(s), "orfeas_http_request_bodies_total", kept="memory")
        small = 1900 * 1024
        for i in range(8):
            atk.spawn(staller, atk, s.port, "127.0.0.%d" % (20 + i), small, small // 2)
        wait_for(lambda: value(samples(s), "orfeas_http_request_body_memory_bytes") == 8 * small,
                 "8 stalled 1.9 MB uploads held in memory: orfeas_http_request_body_memory_bytes = 8 x %d" % small,
                 timeout=10)
        check(body_files(data) == [], "no body file for them")
        atk.spawn(staller, atk, s.port, "127.0.0.30", small, small // 2)
        wait_for(lambda: len(body_files(data)) == 1, "a 9th does not fit in --body-memory-mb 16: its body in a file",
                 timeout=10)
        sm = samples(s)
        check(value(sm, "orfeas_http_request_bodies_total", kept="memory") - kept0 == 8
              and value(sm, "orfeas_http_request_body_memory_bytes") == 8 * small,
              "orfeas_http_request_bodies_total{kept=\"memory\"} +8, the memory gauge unchanged")
        wait_for(lambda: value(samples(s), "orfeas_http_connections_closed_total", reason="body_too_slow") == 17,
                 "the 9 stalled uploads cut below --body-min-rate", timeout=60 if FULL else 10)
        wait_for(lambda: exposed(samples(s), "orfeas_http_request_body_memory_bytes") == 0 and body_files(data) == [],
                 "their memory given back, their file deleted", timeout=10)
        # A client that gives up mid-upload (a body over 2 MB: a file): its
        # file goes too.
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
                  b"boundary=x\r\nContent-Length: 3000000\r\n\r\n" + b"q" * 50000)
        wait_for(lambda: len(body_files(data)) == 1, "the aborted upload's body file", timeout=10)
        c.close()
        wait_for(lambda: body_files(data) == [], "the aborted upload's body file deleted", timeout=10)
        normal_client(s, img)
    finally:
        atk.stop()
    check(s.stop() == 0, "exit 0")
    # What a crash leaves is deleted at start-up.
    stale = os.path.join(data, "tmp", "body-crashed")
    with open(stale, "wb") as f:
        f.write(b"x" * 1000)
    s = Server(data, "--workers", "1")
    check(not os.path.exists(stale) and s.log_has(r"removed 1 upload body file"),
          "start-up deletes the body files a previous run left (and says so)")
    check(s.stop() == 0, "exit 0")
    if not FULL:
        budget_hog(work)


def trickler(atk, port, source, declared, rate, got):
    """An upload that declares `declared` bytes and sends them at `rate`
    bytes/s (above --body-min-rate: never cut), until stopped; what the
    server answered (if it did) goes to got."""
    c = atk.connect(port, source, timeout=10)
    if c is None:
        atk.errors.append("trickler: refused")
        return
    c.sendall(b"POST /api/upload-image HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
              b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % declared)
    try:
        first = c.recv(4096)
    except OSError as e:
        first = repr(e).encode()
    if not first.startswith(b"HTTP/1.1 100"):
        got.append(first)  # refused before its body
        return
    while not atk.stopping.wait(0.1):
        c.sendall(b"t" * (rate // 10))


def budget_hog(work):
    """One address that trickles big uploads just above --body-min-rate
    cannot hold the whole --max-body-inflight-mb: every declared length was
    reserved before a byte came, so 8 of them (~10 KB/s in all) took the
    32 MB budget and every other client's upload got 503 body_budget for as
    long as they trickled (at the default sizes, 11 uploads at 1 KB/s: 50 MB
    each, half a day). An address may reserve a quarter of the budget
    (--max-body-inflight-per-address-mb; at least --max-upload-mb)."""
    img = make_image("png", 64, os.path.join(work, "h.png"))
    s = Server(os.path.join(work, "hog-data"), "--workers", "1", "--max-upload-mb", "4",
               "--max-body-inflight-mb", "32", "--header-timeout", "2", "--body-min-rate", "5000")
    atk = Attack()
    got = []
    declared = 3900 * 1024
    try:
        for i in range(8):
            atk.spawn(trickler, atk, s.port, "127.0.0.40", declared, 12000, got)
        # Two fit in the address's 8 MB; the other six are answered 503 at once.
        wait_for(lambda: len(got) == 6, "6 of the 8 trickled uploads answered", timeout=10)
        check(all(g.startswith(b"HTTP/1.1 503") and b"max-body-inflight-per-address-mb" in g for g in got),
              "each a 503 naming --max-body-inflight-per-address-mb (%r)" % [g[:40] for g in got])
        sm = samples(s)
        check(value(sm, "orfeas_http_request_body_inflight_bytes") == 2 * declared,
              "orfeas_http_request_body_inflight_bytes = the 2 admitted (%g)"
              % value(sm, "orfeas_http_request_body_inflight_bytes"))
        check(value(sm, "orfeas_http_request_body_rejections_total") == 6, "the 6 counted in body_rejections_total")
        # The normal client's upload and job go through beside them, which
        # the two still trickling leave room for.
        normal_client(s, img)
        check(value(samples(s), "orfeas_http_request_body_inflight_bytes") == 2 * declared,
              "the two trickled uploads still hold their share")
    finally:
        atk.stop()
    check(s.stop() == 0, "exit 0")


# ---- protocol abuse ----------------------------------------------------------

HIDDEN = b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
SMUGGLE = [  # (what, request bytes): each followed by a hidden second request
    ("Content-Length with Transfer-Encoding",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding with Content-Length",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 40\r\n\r\n0\r\n\r\n"),
    ("two different Content-Lengths",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"),
    ("a Content-Length that is not a number",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2, 40\r\n\r\n{}"),
    ("Transfer-Encoding: gzip, chunked",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("two Transfer-Encoding headers",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
    # Header lines that two parsers split or name differently (RFC 9110
    # 5.5, RFC 9112 5.1): libmicrohttpd took each, read it one way, and ran
    # the hidden request.
    ("whitespace between Transfer-Encoding and its colon",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("whitespace between Content-Length and its colon (the hidden request is its body)",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length : %d\r\n\r\n" % len(HIDDEN)),
    ("a bare CR before Transfer-Encoding",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nX-A: a\rTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding folded onto a second line (obs-fold)",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n"
     b" chunked\r\n\r\n0\r\n\r\n"),
    ("two Host headers",
     b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}"),
    ("an HTTP/1.1 request without Host (RFC 9112 3.2)",
     b"POST /api/generate-3d HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
]
BAD_PATHS = ["/health%00.png", "/api/job-status/%0a", "/api/upload-image%7f", "/%01metrics"]


def smuggle_loop(atk, port, rounds):
    for i in range(rounds):
        if atk.stopping.is_set():
            return
        what, req = SMUGGLE[i % len(SMUGGLE)]
        got = raw(port, req + HIDDEN, timeout=2, source="127.0.0.2")
        if b"HTTP/1.1 200" in got or not got.startswith(b"HTTP/1.1 400"):
            atk.errors.append("%s: %r" % (what, got[:120]))
        atk.sent += 1


def image_cases(work):
    png = make_image("png", 128, os.path.join(work, "a.png"))
    jpg = make_image("jpeg", 128, os.path.join(work, "a.jpg"))
    bad_png = bytearray(png)
    idat = png.index(b"IDAT")
    for k in range(idat + 8, min(idat + 40, len(png) - 20)):
        bad_png[k] ^= 0x5A
    bad_jpg = bytearray(jpg)
    sos = jpg.index(b"\xff\xda")
    for k in range(sos + 20, sos + 60):
        bad_jpg[k] = 0xFF if k % 2 else 0xD9
    return [("PNG cut at 60%", png[:len(png) * 6 // 10], "truncated"),
            ("PNG with damaged image data", bytes(bad_png), "corrupt"),
            ("JPEG cut at 60%", jpg[:len(jpg) * 6 // 10], None),
            ("JPEG with damaged scan data", bytes(bad_jpg), None)], png, jpg


def case_protocol(work):
    img = make_image("png", 64, os.path.join(work, "n.png"))
    s = Server(os.path.join(work, "data"), "--workers", "1", "--cache-memory-mb", "0")
    atk = Attack()
    atk.sent = 0
    try:
        for what, req in SMUGGLE:
            got = raw(s.port, req + HIDDEN, timeout=3)
            # (MHD answers a non-numeric length itself, its 400's head twice.)
            check(got.startswith(b"HTTP/1.1 400") and b"HTTP/1.1 200" not in got and raw.closed,
                  "%s: 400, connection closed, the hidden request not run" % what)
        got = raw(s.port, b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Length: 99999999999999999999999\r\n\r\n{}" + HIDDEN, timeout=3)
        check(got.startswith(b"HTTP/1.1 413") and b"HTTP/1.1 200" not in got and raw.closed,
              "a Content-Length past 64 bits: 413 (MHD's), connection closed, the hidden request not run")
        sm = samples(s)
        check(value(sm, "orfeas_http_connections_closed_total", reason="bad_framing") == len(SMUGGLE) + 1,
              "each counted in orfeas_http_connections_closed_total{reason=\"bad_framing\"} (%d)"
              % (len(SMUGGLE) + 1))
        check(exposed(sm, "orfeas_http_requests_total", method="GET", endpoint="/api/health", status="200") == 0,
              "no hidden /api/health request ever ran")
        framing_errors = sum(v for (name, labels), v in sm.items()
                             if name == "orfeas_errors_total" and dict(labels).get("type") == "bad_framing")
        check(framing_errors == len(SMUGGLE) + 1,
              "and in orfeas_errors_total{type=\"bad_framing\"}, those libmicrohttpd answers itself too (%d)"
              % framing_errors)
        got = raw(s.port, b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 70000\r\n\r\n", timeout=3, until=b"}")
        check(got.startswith(b"HTTP/1.1 413") and b"64 KiB" in got,
              "a 70 kB generate-3d body (--max-json-kb 64): 413 before it is read")
        got = raw(s.port, b"POST /api/generate-3d HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 2"
                          b"\r\nConnection: close\r\n\r\n{}", timeout=3)
        check(got.startswith(b"HTTP/1.1 400") and b"job_id" in got,
              "two equal Content-Lengths are one length (the body is parsed: 400 for a missing job_id)")
        for path in BAD_PATHS:
            st, _, b = request(s.port, "GET", path)
            check(st == 400 and b"control character" in b, "%s: 400 (a control byte in the decoded path)" % path)
        sm = samples(s)
        check(value(sm, "orfeas_validation_errors_total", field="path", error_type="control_character")
              == len(BAD_PATHS), "counted in orfeas_validation_errors_total{field=\"path\"}")
        check(value(sm, "orfeas_errors_total", type="bad_path", endpoint="other") >= 1,
              "and in orfeas_errors_total{type=\"bad_path\"}")
        # Uploads: decoded before the 200.
        cases, png, jpg = image_cases(work)
        for what, data, etype in cases:
            body, ct = multipart({"image": ("x.img", data)})
            st, _, b = request(s.port, "POST", "/api/upload-image", body, {"Content-Type": ct})
            js = json.loads(b)
            det = (js.get("details") or [{}])[0]
            check(st == 400 and det.get("field") == "image" and det.get("error_type") in ("truncated", "corrupt")
                  and (etype is None or det["error_type"] == etype) and len(js.get("error", "")) > 30,
                  "%s: 400, %s: %s" % (what, det.get("error_type"), js.get("error")))
        for what, data in (("PNG", png), ("JPEG", jpg)):
            body, ct = multipart({"image": ("x.img", data)})
            check(request(s.port, "POST", "/api/upload-image", body, {"Content-Type": ct})[0] == 200,
                  "a whole %s: 200" % what)
        # The same abuse, repeated for a while, beside a normal client.
        rss0 = rss_kb(s.proc.pid)
        atk.spawn(smuggle_loop, atk, s.port, 3000 if FULL else 300)
        for _ in range(2):
            normal_client(s, img)
        atk.threads[0].join(timeout=60)
        check(atk.sent > 0 and not atk.errors, "%d smuggling attempts: each 400 and closed (%s)"
              % (atk.sent, atk.errors[:2]))
        check(rss_kb(s.proc.pid) - rss0 < rss_bound(10 * 1024), "RSS within %d MiB of where it was" % rss_bound(10))
        check(value(samples(s), "orfeas_http_connections_closed_total", reason="bad_framing")
              == len(SMUGGLE) + 1 + atk.sent, "every attempt counted")
        noisy = [ln for ln in s.lines if "Content-Length" in ln]
        check(not noisy, "no log line per bad length (%d attempts; e.g. %s)"
              % (atk.sent // len(SMUGGLE), noisy[:1]))
    finally:
        atk.stop()
    check(s.stop() == 0, "exit 0")


# ---- file descriptors --------------------------------------------------------

def lowest_free_fd(pid):
    used = set(int(x) for x in os.listdir("/proc/%d/fd" % pid))
    n = 0
    while n in used:
        n += 1
    return n


def exhaust_fds(pid, hard):
    """Lowers pid's soft RLIMIT_NOFILE to its lowest free descriptor, once
    that has been steady for 0.15 s (a request's body file or download may
    still be closing), so its next open() fails with EMFILE."""
    last, steady = -1, 0
    while steady < 3:
        n = lowest_free_fd(pid)
        steady = steady + 1 if n == last else 0
        last = n
        time.sleep(0.05)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (last, hard))


def case_fds(work):
    img = make_image("png", 64, os.path.join(work, "n.png"))
    # Start-up: the default limits need more than a hard limit of 256.
    # A deadline on the run (subprocess raises past it), not a measured time.
    p = subprocess.run(["prlimit", "--nofile=256:256", os.environ.get("ORFEASD_BIN", ORFEASD),
                        "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "d0")],
                       capture_output=True, text=True, timeout=10)
    check(p.returncode != 0, "hard limit 256: refused to start within 10 s (rc=%d)" % p.returncode)
    check(re.search(r"need \d+ file descriptors \(HTTP \d+ = 2 x \(--max-connections 1024", p.stderr)
          and "hard limit (RLIMIT_NOFILE) is 256" in p.stderr,
          "  with the numbers: %s" % p.stderr.strip().splitlines()[-1][:160])
    # Limits that fit: the soft limit is raised to the hard one.
    s = Server(os.path.join(work, "d1"), "--max-connections", "100", "--max-ws-clients", "50",
               "--workers", "1", wrap=["prlimit", "--nofile=64:512"])
    check(s.log_has(r"file descriptors: need \d+ .*soft limit 512 \(raised\), hard 512"),
          "soft limit 64 under hard 512: raised to 512 at start-up")
    check(value(samples(s), "process_max_fds") == 512, "process_max_fds = 512")
    check(s.stop() == 0, "exit 0")

    # Out of descriptors at run time (another process's fault, or ENFILE):
    # the running service's soft limit lowered to what it has open.
    # Bodies to files: the upload below must need a descriptor for its body.
    s = Server(os.path.join(work, "d2"), "--workers", "1", "--body-memory-mb", "0")
    pid = s.proc.pid
    st, _, up = s.upload(img)
    jid = up["job_id"]
    s.generate(jid, "stl", quality=1)
    done = s.wait_job(jid)
    st, _, up2 = s.upload(img)
    jid2 = up2["job_id"]
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    kc = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)  # opened before: needs no new fd
    kc.request("GET", "/api/health")
    kc.getresponse().read()
    stuck = None
    try:
        exhaust_fds(pid, hard)
        kc.request("GET", done["download_url"])
        r = kc.getresponse()
        b = r.read()
        check(r.status == 503 and r.getheader("Retry-After") and b"file descriptors" in b,
              "download of an existing model, no fd left: 503 (not 404): %s" % json.loads(b)["error"])
        kc.request("POST", "/api/generate-3d", json.dumps({"job_id": jid2, "format": "stl", "quality": 1}),
                   {"Content-Type": "application/json"})
        r = kc.getresponse()
        r.read()
        check(r.status == 202, "generate accepted")
        while True:
            kc.request("GET", "/api/job-status/" + jid2)
            js = json.loads(kc.getresponse().read())
            if js["status"] in ("completed", "failed"):
                break
            time.sleep(0.02)
        check(js["status"] == "failed" and "file descriptors" in js.get("error", "") and "gone" not in js["error"],
              "a job whose image cannot be opened: failed, saying why (not \"gone\"): %s" % js)
        stuck = socket.create_connection(("127.0.0.1", s.port), timeout=5)  # accept() fails
        body, ct = multipart({"image": ("n.png", img)})
        kc.request("POST", "/api/upload-image", body, {"Content-Type": ct})
        r = kc.getresponse()
        b = r.read()
        check(r.status == 503 and b"file descriptors" in b, "an upload with no fd for its body: 503")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        kc.close()
        if stuck is not None:
            stuck.close()
    # Back: the next connections are accepted and served.
    normal_client(s, img, job_deadline=5)
    sm = samples(s)
    for op in ("download", "job", "upload", "accept"):
        check(value(sm, "orfeas_fd_exhausted_total", op=op) >= 1,
              "counted in orfeas_fd_exhausted_total{op=\"%s\"} (%g)" % (op, value(sm, "orfeas_fd_exhausted_total", op=op)))
    check(s.stop() == 0, "exit 0")


# ---- trusted proxies -----------------------------------------------------------

STATUS = "/api/job-status/00000000-0000-4000-8000-000000000000"  # rate limited, 404


def limited(port, xff=None, source=None):
    h = {"X-Forwarded-For": xff} if xff is not None else {}
    return request(port, "GET", STATUS, headers=h, source=source)[0]


def case_proxy(work):
    s = Server(os.path.join(work, "data"), "--trusted-proxies", "127.0.0.1/32, 10.9.0.0/16",
               "--rate-limit", "0.2", "--rate-burst", "2", "--max-conns-per-address", "4")
    try:
        seq = [limited(s.port, "203.0.113.7") for _ in range(3)]
        check(seq == [404, 404, 429], "a trusted proxy's clients: 203.0.113.7 has its own bucket (%s)" % seq)
        check(limited(s.port, "203.0.113.8") == 404, "  and 203.0.113.8 another")
        check(limited(s.port, "198.51.100.1, 203.0.113.7") == 429,
              "  a client-written left part is ignored: the rightmost untrusted address (203.0.113.7) counts")
        check(limited(s.port, "203.0.113.9, 10.9.4.4") == 404 and limited(s.port, "203.0.113.9 ,10.9.0.1") == 404
              and limited(s.port, "203.0.113.9") == 429,
              "  trusted hops on the right are skipped (10.9.0.0/16): 203.0.113.9's bucket")
        check(limited(s.port, "[2001:db8::1]:443") == 404 and limited(s.port, "2001:DB8:0::1") == 404
              and limited(s.port, "2001:db8::1") == 429, "  IPv6, with a port or not, one canonical bucket")
        check(limited(s.port, "2001:db8::2") == 429 and limited(s.port, "2001:db8:0:1::1") == 404,
              "  IPv6 by its /64: 2001:db8::2 shares 2001:db8::1's bucket, 2001:db8:0:1::1 has its own")
        seq = [limited(s.port, "203.0.113.%d" % (60 + i), source="127.0.0.2") for i in range(3)]
        check(seq == [404, 404, 429],
              "from a peer that is not a trusted proxy, X-Forwarded-For is ignored: the peer's bucket (%s)" % seq)
        seq = [limited(s.port, "unknown") for _ in range(3)]
        check(seq == [404, 404, 429], "a trusted proxy's malformed header: its own (peer) bucket (%s)" % seq)
        # 1.2 KB written by the client on the left (past orfeasd's 1 KB of
        # header kept): the proxy's entry on the right still keys it.
        junk = ", ".join(["198.51.100.200"] * 80)
        seq = [limited(s.port, junk + ", 203.0.113.44") for _ in range(3)]
        check(seq == [404, 404, 429] and limited(s.port, "203.0.113.44") == 429,
              "  a 1.2 KB header: the rightmost address (203.0.113.44) keys it, not the proxy (%s)" % seq)
        two = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Forwarded-For: %s\r\n"
               "X-Forwarded-For: 203.0.113.45\r\n\r\n" % (STATUS, ", ".join(["198.51.100.201"] * 66))).encode()
        seq = [int(raw(s.port, two).split(b" ", 2)[1]) for _ in range(3)]
        check(seq == [404, 404, 429],
              "  a second header past the first's 1 KB: its address (203.0.113.45) keys it (%s)" % seq)
        check_within(lambda: s.log_has(r"req GET /api/job-status/\{job_id\} 429 .* client=203\.0\.113\.7"),
                     "the access log names the client, not the proxy", timeout=5)  # logged after the answer
        sm = samples(s)
        for res, n in (("used", 20), ("ignored", 3), ("malformed", 3)):
            got = value(sm, "orfeas_http_forwarded_for_total", result=res)
            check(got == n, "orfeas_http_forwarded_for_total{result=\"%s\"} = %d (got %g)" % (res, n, got))
        # The per-address connection limit spares trusted proxies.
        atk = Attack()
        try:
            mine = [atk.connect(s.port, "127.0.0.1") for _ in range(10)]
            other = [atk.connect(s.port, "127.0.0.3") for _ in range(10)]
            time.sleep(0.3)
            kept_mine = sum(1 for c in mine if c and not closed_by_server(c, 0.05))
            kept_other = sum(1 for c in other if c and not closed_by_server(c, 0.05))
            check(kept_mine == 10 and kept_other == 4,
                  "--max-conns-per-address 4: a trusted proxy keeps 10, another address 4 (%d, %d)"
                  % (kept_mine, kept_other))
        finally:
            atk.stop()
    finally:
        rc = s.stop()
    check(rc == 0, "exit 0")
    s = Server(os.path.join(work, "data2"), "--rate-limit", "0.2", "--rate-burst", "2")
    seq = [limited(s.port, "203.0.113.%d" % i) for i in range(3)]
    check(seq == [404, 404, 429], "without --trusted-proxies no X-Forwarded-For is believed (%s)" % seq)
    check(s.stop() == 0, "exit 0")


if __name__ == "__main__":
    main({"slow": case_slow, "bodies": case_bodies, "protocol": case_protocol, "fds": case_fds, "proxy": case_proxy})
