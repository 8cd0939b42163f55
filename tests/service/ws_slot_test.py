#!/usr/bin/python3
"""WebSocket client slots are never lost (issue #4): with --max-ws-clients 1,
clients that send an upgrade request and vanish at once (before or while the
101 goes out, RST on close) must all give their slot back, whichever way
orfeasd learns of it, so a real client can connect afterwards.
argv: CASE WORKDIR, like od_test.py."""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from odlib import WS, Server, check, main, parse_metrics, value, wait_for  # noqa: E402


def abort_upgrade(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    s.close()


def case_slots(work):
    s = Server(os.path.join(work, "data"), "--max-ws-clients", "1")
    try:
        for _ in range(30):
            abort_upgrade(s.port)

        def can_connect():
            w = WS(s.port)
            ok = w.status == 101
            w.close()
            return ok
        wait_for(can_connect, "a WebSocket client to get the one slot after 30 aborted upgrades",
                 timeout=15, interval=0.1)
        check(True, "30 aborted upgrades gave their slots back")
        wait_for(lambda: value(parse_metrics(s.metrics()[2]), "orfeas_websocket_connections_active") == 0
                 or None, "no WebSocket connection left open", timeout=10)
        check(True, "orfeas_websocket_connections_active back to 0")
    finally:
        rc = s.stop()
    check(rc == 0, "orfeasd exits 0 on SIGTERM (rc=%s)" % rc)


def case_connections(work):
    """Past --max-connections a request gets 429 JSON and is counted; the
    monitoring endpoints still answer; closing the idle ones restores
    service."""
    s = Server(os.path.join(work, "data"), "--max-connections", "4")
    idle = []
    try:
        for _ in range(6):
            c = socket.create_connection(("127.0.0.1", s.port))
            idle.append(c)
        wait_for(lambda: s.request("GET", "/api/health")[0] == 429 or None,
                 "429 once more than 4 connections are open", timeout=10)
        st, hd, body = s.request("GET", "/api/health")
        check(st == 429 and b"Too many open connections" in body,
              "429 with a JSON error past --max-connections")
        sm = parse_metrics(s.metrics()[2])
        check(value(sm, "orfeas_errors_total", type="too_many_connections", endpoint="/api/health") >= 1,
              "counted in orfeas_errors_total{type=\"too_many_connections\"}")
        check(s.request("GET", "/health")[0] == 200, "/health still answers")
        for c in idle:
            c.close()
        wait_for(lambda: s.request("GET", "/api/health")[0] == 200 or None,
                 "service back once the idle connections close", timeout=10)
        check(True, "200 again after the idle connections closed")
    finally:
        for c in idle:
            c.close()
        rc = s.stop()
    check(rc == 0, "orfeasd exits 0 on SIGTERM (rc=%s)" % rc)


if __name__ == "__main__":
    main({"slots": case_slots, "connections": case_connections})
