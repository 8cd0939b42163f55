#!/usr/bin/python3
"""Serves one file over HTTP on 127.0.0.1 with a given Content-Type.

usage: serve_file.py PORTFILE FILE CONTENT_TYPE
Binds a free port, writes it to PORTFILE, then serves FILE at every path until
killed. Used by tests that need a real scrape target with an exact header.
"""
import http.server
import sys

port_file, path, ctype = sys.argv[1:4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(path, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(port_file + ".tmp", port_file)
server.serve_forever()
