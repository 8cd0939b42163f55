#!/usr/bin/python3
"""ws_client.py URL [JOB_ID...] [--until-done]: a tiny WebSocket client for
trying orfeasd by hand. Connects, subscribes to each job id, and prints
every event as a JSON line until interrupted (with --until-done: until
every job named has ended).

    tests/service/ws_client.py ws://127.0.0.1:5000/ws 1b4e28ba-2fa1-4d3b-...
"""
import json
import sys
import urllib.parse

from odlib import WS


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    until_done = "--until-done" in sys.argv
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    url = urllib.parse.urlparse(args[0])
    if url.scheme != "ws" or url.hostname is None:
        print("ws_client: expected ws://HOST:PORT/ws", file=sys.stderr)
        return 2
    ws = WS(url.port or 80, host=url.hostname)
    if ws.status != 101:
        print("ws_client: upgrade refused: %s" % ws.head.splitlines()[0], file=sys.stderr)
        return 1
    pending = set(args[1:])
    for jid in pending:
        ws.send_json({"event": "subscribe", "data": {"job_id": jid}})
    while True:
        ev = ws.recv_event(timeout=3600)
        if ev is None:
            print("ws_client: server closed the connection (code %s)" % ws.close_code)
            return 0
        print(json.dumps(ev), flush=True)
        if ev["event"] in ("generation_complete", "generation_error"):
            pending.discard(ev["data"]["job_id"])
            if until_done and not pending:
                ws.close()
                return 0


if __name__ == "__main__":
    sys.exit(main())
