"""A test-only SMART Backend Services authorization server (stdlib `http.server`, 127.0.0.1).

    with TokenServer(jwks, client_id="bridge", access_token="t0k") as auth_server:
        auth_server.base_url            # serves /.well-known/smart-configuration and /token
        auth_server.token_endpoint

It verifies each `private_key_jwt` client assertion against the JWKS registered at construction and
refuses, with an OAuth error and a recorded reason: a malformed request, an alg other than RS384/ES384,
an unknown kid, a bad signature, wrong iss/sub/aud, a missing, expired or more-than-5-minutes-ahead
`exp`, an `iat`/`nbf` in the future, a reused `jti`, non-`system/` scopes. Accepted requests get the
configured opaque token (give the local FHIR server the same value as `FHIR_REQUIRE_BEARER`).

Never use it outside tests: it keeps no state on disk and has no rate limits.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from shared.ehr.auth.jws import ALGORITHMS, JwsError, PublicKey, decode_unverified, key_from_jwk, verify_signature

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300
CLOCK_SKEW = 60
MAX_FORM_BYTES = 64 * 1024


class Rejected(Exception):  # noqa: N818 - an OAuth refusal, not a server failure
    def __init__(self, error: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.status = status


class TokenServer:
    def __init__(
        self,
        jwks: dict[str, Any],
        *,
        client_id: str,
        access_token: str | None = None,
        expires_in: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.access_token = access_token or secrets.token_urlsafe(24)
        self.expires_in = expires_in
        #: Tokens handed out before `access_token` (e.g. a stale one, to exercise 401 → refetch).
        self.queued_tokens: list[str] = []
        self._keys: dict[str, tuple[str, PublicKey]] = {}
        for jwk in jwks.get("keys", []):
            self._keys[str(jwk["kid"])] = (str(jwk.get("alg", "")), key_from_jwk(jwk))
        self._clock = clock
        self._lock = threading.Lock()
        self._seen_jti: dict[str, float] = {}
        self.token_requests = 0
        self.tokens_issued = 0
        self.rejections: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet; tests read counters instead

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0].rstrip("/") == "/.well-known/smart-configuration":
                    self._json(200, owner.smart_configuration())
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0].rstrip("/") != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, MAX_FORM_BYTES)).decode("utf-8", "replace")
                status, document = owner.handle_token_request(self.headers.get("Content-Type", ""), body)
                self._json(status, document)

            def _json(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("TokenServer is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/token"

    def smart_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": ["system/*.rs", "system/*.cu", "system/Appointment.cu", "system/Patient.rs"],
            "capabilities": ["client-confidential-asymmetric"],
        }

    # -- the token endpoint ------------------------------------------------------------------------------

    def handle_token_request(self, content_type: str, body: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.token_requests += 1
        try:
            scope = self._check(content_type, body)
        except Rejected as exc:
            with self._lock:
                self.rejections.append(exc.reason)
            return exc.status, {"error": exc.error, "error_description": exc.reason}
        with self._lock:
            self.tokens_issued += 1
            token = self.queued_tokens.pop(0) if self.queued_tokens else self.access_token
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in, "scope": scope}

    def _check(self, content_type: str, body: str) -> str:
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise Rejected("invalid_request", "content type must be application/x-www-form-urlencoded")
        form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            raise Rejected("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise Rejected("invalid_request", "client_assertion_type must be jwt-bearer")
        scope = form.get("scope", "")
        if not scope or not all(s.startswith("system/") for s in scope.split()):
            raise Rejected("invalid_scope", "scope must be system/ scopes")
        assertion = form.get("client_assertion", "")
        try:
            header, claims, signing_input, signature = decode_unverified(assertion)
        except JwsError:
            raise Rejected("invalid_client", "malformed assertion") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Rejected("invalid_client", "alg not allowed")
        registered = self._keys.get(str(header.get("kid")))
        if registered is None:
            raise Rejected("invalid_client", "unknown kid")
        registered_alg, key = registered
        if registered_alg and registered_alg != alg:
            raise Rejected("invalid_client", "alg does not match the registered key")
        try:
            valid = verify_signature(str(alg), key, signing_input, signature)
        except JwsError:
            raise Rejected("invalid_client", "alg does not match the registered key") from None
        if not valid:
            raise Rejected("invalid_client", "bad signature")
        self._check_claims(claims)
        return scope

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        if claims.get("iss") != self.client_id:
            raise Rejected("invalid_client", "wrong iss")
        if claims.get("sub") != self.client_id:
            raise Rejected("invalid_client", "wrong sub")
        if claims.get("aud") != self.token_endpoint:
            raise Rejected("invalid_client", "wrong aud")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise Rejected("invalid_client", "exp missing")
        if exp <= now:
            raise Rejected("invalid_client", "expired")
        if exp > now + MAX_ASSERTION_LIFETIME + 5:
            raise Rejected("invalid_client", "exp more than 5 minutes ahead")
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float) or value > now + CLOCK_SKEW):
                raise Rejected("invalid_client", f"{name} in the future")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Rejected("invalid_client", "jti missing")
        with self._lock:
            self._seen_jti = {k: v for k, v in self._seen_jti.items() if v > now}
            if jti in self._seen_jti:
                raise Rejected("invalid_client", "jti reused")
            self._seen_jti[jti] = float(exp)
