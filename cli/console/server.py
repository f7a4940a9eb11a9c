"""The console's HTTP server: loopback only, strict about what it accepts, with security headers.

* Binds 127.0.0.1 (never another interface) and answers only requests whose Host is this console's
  own `127.0.0.1:<port>` or `localhost:<port>`: a web page elsewhere cannot reach it through DNS
  rebinding.
* GET and HEAD read; POST exists only for the audited reveal, as a same-origin form post (`Origin`
  and `Sec-Fetch-Site`, when the browser sends them, must say so) carrying the per-booking token
  (`cli.console.app`); other methods are 405.
* Every answer has a CSP that allows no script and no asset from anywhere else, `nosniff`, no
  framing, no referrer to other sites, and `no-store` (a revealed name must not sit in a cache).
* Request lines are not logged: they carry booking uids and nothing here needs them afterwards.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cli.console.app import ConsoleApp, Response

MAX_URL = 2048
MAX_FORM_BYTES = 4096
MAX_FIELDS = 20
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the reveal's form post.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class ConsoleServer:
    def __init__(self, app: ConsoleApp, port: int = 0) -> None:
        self._app = app
        server = self

        class _Handler(BaseHTTPRequestHandler):
            server_version = "calehr-console"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, response: Response, *, head: bool = False) -> None:
                self.send_response(response.status)
                for name, value in SECURITY_HEADERS.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if not head:
                    self.wfile.write(response.body)

            def _refuse(self, status: int, message: str) -> None:
                body = f"{status} {message}\n".encode()
                self._send(Response(status, body, "text/plain; charset=utf-8"))

            def _checked_target(self) -> tuple[str, str] | None:
                """(path, query) of an acceptable request, else None after refusing it."""
                if (self.headers.get("Host") or "") not in server.allowed_hosts:
                    self._refuse(421, "this console answers only on its own loopback address")
                    return None
                if len(self.path) > MAX_URL:
                    self._refuse(414, "URL too long")
                    return None
                parts = urlsplit(self.path)
                return parts.path, parts.query

            def _parse(self, text: str) -> dict[str, list[str]] | None:
                try:
                    return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
                except ValueError:
                    self._refuse(400, "too many or malformed parameters")
                    return None

            def do_GET(self) -> None:
                self._get(head=False)

            def do_HEAD(self) -> None:
                self._get(head=True)

            def _get(self, *, head: bool) -> None:
                target = self._checked_target()
                if target is None:
                    return
                params = self._parse(target[1])
                if params is not None:
                    self._send(server.app.handle("GET", target[0], params), head=head)

            def do_POST(self) -> None:
                target = self._checked_target()
                if target is None:
                    return
                origin = self.headers.get("Origin")
                if origin is not None and origin not in server.allowed_origins:
                    self._refuse(403, "cross-origin form posts are refused")
                    return
                if self.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
                    self._refuse(403, "cross-site form posts are refused")
                    return
                if (self.headers.get("Content-Type") or "").split(";")[
                    0
                ].strip() != "application/x-www-form-urlencoded":
                    self._refuse(415, "expected a form (application/x-www-form-urlencoded)")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "")
                except ValueError:
                    self._refuse(411, "Content-Length required")
                    return
                if not 0 <= length <= MAX_FORM_BYTES:
                    self._refuse(413, "form too large")
                    return
                try:
                    text = self.rfile.read(length).decode("utf-8")
                except UnicodeDecodeError:
                    self._refuse(400, "the form is not UTF-8")
                    return
                params = self._parse(text)
                if params is not None:
                    self._send(server.app.handle("POST", target[0], params))

            def _not_allowed(self) -> None:
                self._refuse(405, "method not allowed")

            do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="console", daemon=True)

    @property
    def app(self) -> ConsoleApp:
        return self._app

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def allowed_origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.allowed_hosts)

    def start(self) -> ConsoleServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
