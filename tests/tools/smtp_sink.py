#!/usr/bin/python3
"""A local SMTP sink for tests: accepts every message and keeps it.

usage: smtp_sink.py DIR PORT_FILE

Listens on 127.0.0.1, a free port (written to PORT_FILE once it accepts
connections), with Debian's python3-aiosmtpd. Each message is written to
DIR/NNN.eml (the DATA as received, envelope sender and recipients as
X-Envelope-From / X-Envelope-To lines on top), atomically (tmp + rename).
No TLS, no AUTH: Alertmanager (smtp_require_tls: false) and msmtp (tls off)
deliver to it in the live run. Stops on SIGTERM.
"""
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
from odlib import free_port  # noqa: E402


class Keep:
    def __init__(self, out):
        self.out = out
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        head = (f"X-Envelope-From: {envelope.mail_from}\r\n"
                f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        tmp = os.path.join(self.out, f".{n:03d}.tmp")
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.replace(tmp, os.path.join(self.out, f"{n:03d}.eml"))
        return "250 OK"


def main():
    out, port_file = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    port = free_port()  # outside the ephemeral range (odlib says why)
    c = Controller(Keep(out), hostname="127.0.0.1", port=port)
    c.start()  # returns once the server answers
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.replace(port_file + ".tmp", port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    c.stop()


if __name__ == "__main__":
    main()
