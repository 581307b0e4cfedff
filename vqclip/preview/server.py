"""The preview's web server: the standard library's threaded http.server, three kinds of address, nothing else.

- `/` the page (page.html, shipped with vqclip), `/events` its server-sent events (vqclip.preview.state);
- `/files/<path>` a PNG, gif, mp4 or the gallery of the run's own folder, and only that folder (vqclip.paths).
Everything else is 404; a request whose Host is a name other than localhost is refused (403), so a web page
elsewhere cannot reach it through a DNS name rebound to 127.0.0.1.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import queue
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from ..paths import inside
from .state import LiveState

__all__ = ["PreviewServer"]

TYPES = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4", ".html": "text/html; charset=utf-8"}
PING_SECONDS = 15  # a comment line this often: a page that went away is noticed, proxies keep the stream open
# the page's own script and style only; images from the run's folder or the events' data: URLs
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FILE_POLICY = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LiveState

    def __init__(self, address: tuple[str, int], state: LiveState):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # seconds a write to a page may block before that page is dropped
    server_version = "vqclip-preview"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's name
        pass  # the run's progress bar owns the terminal

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._host_allowed():
            return self._refuse(HTTPStatus.FORBIDDEN)
        path = urlsplit(self.path).path
        if path == "/":
            page = resources.files(__package__).joinpath("page.html").read_bytes()
            return self._send(page, TYPES[".html"], PAGE_POLICY)
        if path == "/events":
            return self._events()
        if path.startswith("/files/"):
            return self._file(unquote(path[len("/files/") :]))
        self._refuse(HTTPStatus.NOT_FOUND)

    def _host_allowed(self) -> bool:
        """localhost, or an address literal (a rebinding attack needs a name of its own)."""
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if host == "localhost":
            return True
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    def _file(self, rel: str) -> None:
        path = inside(self.server.state.root, rel)
        if path is None or path.suffix.lower() not in TYPES:
            return self._refuse(HTTPStatus.NOT_FOUND)
        try:
            data = path.read_bytes()
        except OSError:
            return self._refuse(HTTPStatus.NOT_FOUND)
        self._send(data, TYPES[path.suffix.lower()], FILE_POLICY)

    def _events(self) -> None:
        snapshot, q = self.server.state.subscribe()
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self._event("snapshot", snapshot, retry=1000)
            while True:
                try:
                    item = q.get(timeout=PING_SECONDS)
                except queue.Empty:
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    continue
                if item is None:
                    return
                self._event(*item)
        except OSError:  # the page went away, or stopped reading
            pass
        finally:
            self.server.state.unsubscribe(q)

    def _event(self, name: str, data: dict, retry: Optional[int] = None) -> None:
        head = f"retry: {retry}\n" if retry else ""
        self.wfile.write(f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _send(self, body: bytes, kind: str, policy: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", policy)
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: HTTPStatus) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class PreviewServer:
    """Serves a LiveState on host:port (port 0: any free one) from a thread until `close`."""

    def __init__(self, state: LiveState, host: str = "127.0.0.1", port: int = 0):
        try:
            self._httpd = _Server((host, port), state)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is in use; give another --preview-port, or 0 for any free one"
                ) from None
            raise UsageError(
                f"cannot serve the preview on {host}:{port} ({e.strerror or e}); give another "
                f"--preview-host or --preview-port"
            ) from None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="vqclip-preview-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    @property
    def root(self) -> Optional[Path]:
        return self._httpd.state.root

    def start(self) -> "PreviewServer":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; every page's stream has been ended by LiveState.close before."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
