"""A stdlib HTTP file server on 127.0.0.1 for the download/URL-loading tests (Range, 404, no length, broken links)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FileServer:
    """Serves ``files[path] = bytes``. Path prefixes change behaviour: ``/norange/`` ignores Range, ``/nolength/``
    sends no Content-Length, ``/flaky/`` breaks off after half the body the first time a path is requested."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._broken: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not self.path.startswith("/norange/"):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                if not self.path.startswith("/nolength/"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path.startswith("/flaky/") and self.path not in server._broken:
                    server._broken.add(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    return  # HTTP/1.0: the connection closes short of Content-Length
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server():
    with FileServer() as server:
        yield server
