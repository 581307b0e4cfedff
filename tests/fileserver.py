"""A small HTTP file server on 127.0.0.1 for download tests: Range requests, dropped connections, errors, and
hostile servers (no or malformed Content-Length, a wrong Content-Range, an endless body, a drip)."""

from __future__ import annotations

import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOSTILE_SECONDS = 30  # an endless or dripping response stops by itself after this, whatever the client does


class FileServer:
    """Serves `files[path] = bytes`; `status[path]` forces an error code, `drop[path] = n` cuts the next
    response after n bytes (once per entry in the list), `html` paths answer with a web page.

    Hostile modes: `no_length` paths send no Content-Length (the end of the body is the connection's close, so a
    drop looks like a whole file); `bad_length[path]` is the Content-Length header sent as it is; `bad_range`
    paths answer a Range request with a 206 that restarts at byte 0; `endless` paths stream random bytes until
    the client leaves; `drip[path] = s` sends one byte every s seconds. All stop when the server does."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.drop: dict[str, list[int]] = {}
        self.html: set[str] = set()
        self.ignore_range = False
        self.no_length: set[str] = set()
        self.bad_length: dict[str, str] = {}
        self.bad_range: set[str] = set()
        self.endless: set[str] = set()
        self.drip: dict[str, float] = {}
        self.stopping = threading.Event()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                server.requests.append((path, self.headers.get("Range")))
                if path in server.status:
                    return self._reply(server.status[path], b"error page")
                if path in server.html:
                    return self._reply(200, b"<html>please wait</html>", "text/html; charset=utf-8")
                if path in server.endless:
                    return self._forever(lambda: os.urandom(64 * 1024), 0.0)
                if path not in server.files:
                    return self._reply(404, b"not found")
                data = server.files[path]
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        return self._reply(416, b"")
                if start and path in server.bad_range:  # a 206 that says so, but from the first byte
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", "application/octet-stream")
                if path in server.bad_length:
                    self.send_header("Content-Length", server.bad_length[path])
                elif path not in server.no_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                self.end_headers()
                if path in server.drip:
                    chunks = iter(body[k : k + 1] for k in range(len(body)))
                    return self._forever(lambda: next(chunks, b""), server.drip[path], headers_sent=True)
                cut = server.drop.get(path)
                if cut:
                    self.wfile.write(body[: cut.pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def _forever(self, block, pause: float, headers_sent: bool = False):
                """Send block() every pause seconds until it is empty, the client leaves or the server stops."""
                if not headers_sent:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                self.close_connection = True
                end = time.monotonic() + HOSTILE_SECONDS
                try:
                    while not server.stopping.is_set() and time.monotonic() < end:
                        data = block()
                        if not data:
                            return
                        self.wfile.write(data)
                        self.wfile.flush()
                        if pause:
                            server.stopping.wait(pause)
                except OSError:  # the client gave up
                    pass

            def _reply(self, code, body, kind="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths_requested(self) -> list[str]:
        return [p for p, _ in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        return False
