"""A TLS-terminating reverse proxy that checks HTTP basic authentication: a cluster's front door.

A production OpenSearch has TLS and users (its security plugin); the local node has neither, and
the security plugin is not on Maven Central. This proxy stands in for that front door in the
tests, in front of the real node: it serves HTTPS with a certificate of a throwaway CA, answers
401 to a request without the right user and password (as the security plugin does), and passes
every other request on to the node unchanged.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import trustme

# Hop-by-hop headers and those the proxy sets itself.
_NOT_FORWARDED = {"authorization", "host", "connection", "keep-alive", "transfer-encoding"}
_NOT_RETURNED = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class TlsProxy:
    """A running proxy: where it listens, how to log in, and what it saw.

    Attributes
    ----------
    url
        ``https://localhost:<port>``.
    ca_file
        PEM file of the CA that signed the proxy's certificate.
    username, password
        The only credentials it lets through.
    authorised, refused
        Numbers of requests passed on and refused with 401.
    """

    url: str
    ca_file: Path
    username: str
    password: str
    authorised: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, passed: bool) -> None:
        with self._lock:
            if passed:
                self.authorised += 1
            else:
                self.refused += 1


def _handler(proxy: TlsProxy, upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)
    expected = "Basic " + base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is no place for an access log."""

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _NOT_RETURNED:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.headers.get("Authorization") != expected:
                proxy.count(passed=False)
                self._reply(
                    401,
                    [
                        ("WWW-Authenticate", 'Basic realm="OpenSearch Security"'),
                        ("Content-Type", "text/plain; charset=UTF-8"),
                    ],
                    b"Unauthorized",
                )
                return
            proxy.count(passed=True)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self._reply(response.status, response.getheaders(), data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def tls_proxy(upstream: str, folder: Path, username: str, password: str) -> Iterator[TlsProxy]:
    """Run a proxy in front of ``upstream`` (an ``http://`` URL) until the block ends."""
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    proxy = TlsProxy(f"https://localhost:{server.server_address[1]}", ca_file, username, password)
    server.RequestHandlerClass = _handler(proxy, upstream)
    thread = threading.Thread(target=server.serve_forever, name="tls-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
