#!/usr/bin/python3
"""WebSocket client slots are never lost (issue #4): with --max-ws-clients 1,
clients that send an upgrade request and vanish at once (before or while the
101 goes out, RST on close) must all give their slot back, whichever way
orfeasd learns of it, so a real client can connect afterwards. Subscriptions
end with their job (issue #16): one connection follows more jobs than its 32
subscriptions without unsubscribing, and --ws-max-subscriptions bounds what
it follows at once.
argv: CASE WORKDIR, like od_test.py."""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from odlib import (WS, Server, TestFailure, check, check_within, exposed, main, make_image, parse_metrics,  # noqa: E402
                   value, wait_for)


def abort_upgrade(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    s.close()


def sio_reply(ws, prefixes, timeout=10):
    """The next Socket.IO frame that starts with one of prefixes, skipping
    others (pings answered); a failure when none came in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            op, payload = ws.recv_frame(max(0.01, deadline - time.monotonic()))
        except socket.timeout:
            raise TestFailure("no Socket.IO frame %r within %d s" % (prefixes, timeout))
        if op == 9:
            ws.send_frame(10, payload)
            continue
        text = payload.decode() if op == 1 else ""
        if text == "2":
            ws.send_frame(1, b"3")
        elif text.startswith(prefixes):
            return text


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
        check_within(can_connect, "30 aborted upgrades gave their slots back: a WebSocket client gets "
                     "the one slot", timeout=15, interval=0.1)
        check_within(lambda: exposed(parse_metrics(s.metrics()[2]), "orfeas_websocket_connections_active") == 0
                     or None, "orfeas_websocket_connections_active back to 0", timeout=10)
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
        check_within(lambda: s.request("GET", "/api/health")[0] == 200 or None,
                     "200 again after the idle connections closed", timeout=10)
    finally:
        for c in idle:
            c.close()
        rc = s.stop()
    check(rc == 0, "orfeasd exits 0 on SIGTERM (rc=%s)" % rc)


def case_subscriptions(work):
    """One connection, 40 jobs (more than its 32 subscriptions), never an
    unsubscribe: 20 subscribed before they run (the end comes through the
    hub's outbox) and 20 subscribed after they ended (the end comes from
    the subscribe's answer). Every subscribe is answered `subscribed`, every
    job's end arrives, and no subscription is refused."""
    img = make_image("png", 64, os.path.join(work, "small.png"))
    s = Server(os.path.join(work, "data"), "--workers", "2")
    w = WS(s.port)
    try:
        def generate(job_id):
            st = s.generate(job_id)[0]
            if st != 202:
                raise TestFailure("generate-3d %s answered %d" % (job_id, st))

        def follow(job_id, late):
            """True when the subscribe is answered and the job's end arrives."""
            if late:
                s.wait_job(job_id)
            w.send_json({"event": "subscribe", "data": {"job_id": job_id}})
            if not late:
                generate(job_id)
            got, closed = w.events_until(
                lambda e: e.get("event") in ("error", "generation_complete", "generation_error")
                and e.get("data", {}).get("job_id", job_id) == job_id, timeout=30)
            events = [e["event"] for e in got]
            if closed or events[-1] != "generation_complete" or "subscribed" not in events:
                print("job %s (%s): %s" % (job_id, "late" if late else "early", events))
                return False
            return True
        ids = []
        for i in range(40):
            job_id = s.upload(img)[2]["job_id"]
            if i >= 20:  # ended before anyone subscribes
                generate(job_id)
            ids.append(job_id)
        followed = sum(follow(job_id, late=i >= 20) for i, job_id in enumerate(ids))
        check(followed == 40, "%d of 40 jobs followed on one connection: subscribed, "
              "and the end received" % followed)
        sm = parse_metrics(s.metrics()[2])
        refused = value(sm, "orfeas_validation_errors_total", field="ws_message",
                        error_type="too_many_subscriptions") or 0
        check(refused == 0, "no subscription refused (too_many_subscriptions %s)" % refused)
    finally:
        w.close()
        rc = s.stop()
    check(rc == 0, "orfeasd exits 0 on SIGTERM (rc=%s)" % rc)


def case_subscription_limit(work):
    """--ws-max-subscriptions 2: a third job followed at once is refused
    with an error that names the flag (code too_many_subscriptions), on
    /ws and on a Socket.IO connection (an explicit subscribe_job and a
    reconnect's CONNECT), and counted; unsubscribing frees the
    slot. (Uploaded jobs never end, so their subscriptions stay.)"""
    img = make_image("png", 64, os.path.join(work, "small.png"))
    s = Server(os.path.join(work, "data"), "--ws-max-subscriptions", "2")
    w = WS(s.port)
    try:
        ids = [s.upload(img)[2]["job_id"] for _ in range(3)]

        def answer(event, job_id):
            """The first subscribed/unsubscribed/error event after sending."""
            w.send_json({"event": event, "data": {"job_id": job_id}})
            got, closed = w.events_until(
                lambda e: e.get("event") in ("subscribed", "unsubscribed", "error"), timeout=10)
            if closed or not got:
                raise TestFailure("no answer to %s %s (events %s)" % (event, job_id, got))
            return got[-1]
        for job_id in ids[:2]:
            ev = answer("subscribe", job_id)
            check(ev["event"] == "subscribed", "subscribe %s answered %s" % (job_id[:8], ev["event"]))
        ev = answer("subscribe", ids[2])
        msg = ev.get("data", {}).get("message", "")
        check(ev["event"] == "error" and "at most 2 subscriptions" in msg and "--ws-max-subscriptions" in msg and
              ev["data"].get("job_id") == ids[2] and ev["data"].get("code") == "too_many_subscriptions",
              "a third subscription is refused with an error naming the flag and the job, code "
              "too_many_subscriptions: %s" % json.dumps(ev))
        # A Socket.IO client on the same server: the same refusal as its
        # error event (no acknowledgement for the refused subscribe).
        sio = WS(s.port, path="/socket.io/?EIO=4&transport=websocket")
        try:
            sio_reply(sio, ("0{",))
            sio.send_frame(1, b"40")
            sio_reply(sio, ('42["connected"',))
            for n, job_id in enumerate(ids, 1):
                sio.send_frame(1, ('42%d["subscribe_job",{"job_id":"%s"}]' % (n, job_id)).encode())
                got = sio_reply(sio, ("43%d[" % n, '42["error"'))
            d = json.loads(got[2:])[1]
            check(got.startswith('42["error"') and d.get("code") == "too_many_subscriptions"
                  and d.get("job_id") == ids[2] and "--ws-max-subscriptions" in d.get("message", ""),
                  "Socket.IO: the third subscribe_job refused with an error event, code too_many_subscriptions (%s)"
                  % got)
            # A reconnect's CONNECT (auth {"pid", "offset"}) subscribes to
            # the offset's job by itself; sent again on this full connection
            # it is refused the same way (until 2026-12-03 it was dropped
            # without a word). The "2probe" after it marks the end of its
            # answers ("3probe" comes after them).
            sio.send_frame(1, ('40{"pid":"p","offset":"%s"}' % ids[2]).encode())
            sio.send_frame(1, b"2probe")
            answers = []
            while not answers or answers[-1] != "3probe":
                answers.append(sio_reply(sio, ("40{", '42["', "3probe")))
            refused = [json.loads(a[2:])[1] for a in answers if a.startswith('42["error"')]
            check(answers[0].startswith("40{") and answers[1].startswith('42["connected"') and len(refused) == 1
                  and refused[0].get("code") == "too_many_subscriptions" and refused[0].get("job_id") == ids[2],
                  "Socket.IO: a reconnect's subscribe past the limit refused with an error event, code "
                  "too_many_subscriptions (%s)" % answers)
        finally:
            sio.close()
        check_within(lambda: (value(parse_metrics(s.metrics()[2]), "orfeas_validation_errors_total",
                                    field="ws_message", error_type="too_many_subscriptions") or 0) == 3 or None,
                     "the three refusals counted in orfeas_validation_errors_total{error_type=\"too_many_subscriptions\"}",
                     timeout=10)
        check(answer("unsubscribe", ids[0])["event"] == "unsubscribed", "unsubscribe answered")
        ev = answer("subscribe", ids[2])
        check(ev["event"] == "subscribed", "after an unsubscribe the third job can be followed (%s)" % ev["event"])
    finally:
        w.close()
        rc = s.stop()
    check(rc == 0, "orfeasd exits 0 on SIGTERM (rc=%s)" % rc)


if __name__ == "__main__":
    main({"slots": case_slots, "connections": case_connections,
          "subscriptions": case_subscriptions, "subscription_limit": case_subscription_limit})
