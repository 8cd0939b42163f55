#!/usr/bin/python3
"""A webhook receiver for Alertmanager that logs what it gets.

usage: webhook-logger.py [--listen HOST:PORT] [--log FILE] [--port-file FILE]

Every POST to /alerts/<receiver> is appended to FILE (default: stdout) as
one JSON line: {"time", "path", "receiver", "status", "alerts": [{alertname,
severity, status, labels, annotations}]} (annotations: summary, description,
runbook_url). GET /alerts returns those lines (the drills
and tests read them). Port 0 picks a free port, written to --port-file.
The compose stack runs it as `alert-webhook`, scripts/stack natively.
"""
import argparse
import http.server
import json
import sys
import threading
import time

LOCK = threading.Lock()
LINES = []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:9095")
    ap.add_argument("--log")
    ap.add_argument("--port-file")
    a = ap.parse_args()
    out = open(a.log, "a", encoding="utf-8") if a.log else sys.stdout

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                d = json.loads(body)
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            rec = {
                "time": round(time.time(), 3),
                "path": self.path,
                "receiver": d.get("receiver"),
                "status": d.get("status"),
                "alerts": [{"alertname": x.get("labels", {}).get("alertname"),
                            "severity": x.get("labels", {}).get("severity"),
                            "status": x.get("status"),
                            "labels": x.get("labels", {}),
                            "annotations": x.get("annotations", {})}
                           for x in d.get("alerts", [])],
            }
            line = json.dumps(rec, sort_keys=True)
            with LOCK:
                LINES.append(line)
                out.write(line + "\n")
                out.flush()
            self.send_response(200)
            self.end_headers()

        def do_GET(self):
            with LOCK:
                body = ("\n".join(LINES) + ("\n" if LINES else "")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    host, port = a.listen.rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        import os
        os.replace(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
