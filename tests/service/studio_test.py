#!/usr/bin/python3
"""The Studio's server side (issue #14), against the real orfeasd.
argv: CASE WORKDIR, like od_test.py. Cases:
  static   the page at / and /studio and its files under /static/: types,
           caching, CSP and nosniff, HEAD and 304; hostile paths (raw
           requests, so no client normalises them), symbolic links out of
           the folder, a missing --static-dir.
"""
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import ORFEASD, Server, check, main, parse_metrics, value  # noqa: E402


def raw_request(port, target, method="GET", headers=""):
    """One request exactly as written (no client normalises the path);
    returns (status, head text, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (method, target, headers))
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
    check(st == 304 and body == b"", "If-Modified-Since the same date: 304")
    st, _, _ = s.request("POST", "/")
    check(st == 405, "POST /: 405")

    for path, ctype in [("/static/studio.js", "text/javascript; charset=utf-8"),
                        ("/static/studio.css", "text/css; charset=utf-8"),
                        ("/static/favicon.svg", "image/svg+xml"),
                        ("/static/vendor/three.js", "text/javascript; charset=utf-8")]:
        st, hd, _ = s.request("GET", path)
        check(st == 200 and hd["content-type"] == ctype and hd.get("x-content-type-options") == "nosniff"
              and "content-security-policy" not in hd and hd["cache-control"] == "public, max-age=60",
              "%s: 200, %s, nosniff, cached a minute" % (path, ctype))
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
    check(value(sm, "orfeas_http_requests_total", method="GET", endpoint="/", status="200") >= 2,
          "the page is counted under endpoint /")
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
    st, _, body = s.request("GET", "/")
    check(st == 200 and b"mine" in body, "--static-dir: its index.html is the page")
    for target in ["/static/leak.txt", "/static/up/secret.txt", "/static/fifo.txt", "/static/sub"]:
        st, _, body = raw_request(s.port, target)
        check(st == 404 and b"secret-bytes" not in body, "%s (a link out, a FIFO, a folder): 404" % target)
    check(s.stop() == 0, "exit 0")

    r = subprocess.run([ORFEASD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "d3"),
                        "--static-dir", os.path.join(work, "missing")],
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, timeout=30)
    check(r.returncode != 0 and b"--static-dir" in r.stderr,
          "--static-dir naming no page: start-up fails naming the flag (%r)" % r.stderr[-160:])


if __name__ == "__main__":
    main({"static": case_static})
