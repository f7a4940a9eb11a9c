"""SMART Backend Services (client_credentials + private_key_jwt) as an `httpx.Auth`.

    auth = smart_auth_from_secret(secret_document, fhir_base_url)
    client = FhirR4Client(fhir_base_url, auth=auth)

* **Discovery**: `<base>/.well-known/smart-configuration`, cached per URL for the container's life;
  `token_endpoint` in the secret skips it (for servers that do not publish the document).
* **Client assertion**: a one-time JWT signed RS384 or ES384 with header `kid`; `iss` = `sub` = client
  id, `aud` = the token endpoint, `exp` = now + 4 min (SMART allows at most 5), a random `jti`.
* **Token cache**: one access token per auth object, shared by every request and thread; it is
  renewed 60 s before it expires (half its lifetime when that is shorter). The lock is held while
  fetching, so concurrent requests wait for one fetch instead of each making their own.
* **401 from the FHIR server**: the token is dropped (unless another thread already replaced it) and
  the request is sent once more with a fresh token; a second 401 is returned to the caller.

Errors are `PermanentEhrError` (the token endpoint refused the client: a registration or key
problem a human must fix) or `RetryableEhrError` (timeouts, 5xx, 429). Their details name the OAuth
error code and HTTP status only; tokens, assertions and keys are never logged or put in messages.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.ehr.auth.jws import ALGORITHMS, Algorithm, JwsError, PrivateKey, check_key_matches, encode, load_private_key
from shared.ehr.auth.jws import public_jwk as _public_jwk
from shared.errors import PermanentEhrError, RetryableEhrError

WELL_KNOWN = ".well-known/smart-configuration"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 240
REFRESH_MARGIN_SECONDS = 60
DEFAULT_EXPIRES_IN = 300
#: Plain http is accepted for loopback test servers only.
_LOCAL_HTTP = ("http://127.0.0.1:", "http://localhost:")
#: OAuth error codes (RFC 6749 §5.2) are safe to report; anything else is reported as "unknown".
_OAUTH_ERRORS = frozenset(
    {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
     "invalid_scope", "access_denied", "server_error", "temporarily_unavailable"}
)  # fmt: skip


class SmartConfigError(ValueError):
    """The SMART secret or the server's smart-configuration is unusable (names the field, not values)."""


@dataclass(frozen=True, slots=True)
class SmartCredentials:
    client_id: str
    private_key: PrivateKey = field(repr=False)
    kid: str
    alg: Algorithm
    scopes: str
    token_endpoint: str | None = None

    def __post_init__(self) -> None:
        if not all(scope.startswith("system/") for scope in self.scopes.split()):
            raise SmartConfigError("scopes: backend services use system/ scopes only")

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS to register with the EHR (public part only)."""
        return {"keys": [_public_jwk(self.private_key, kid=self.kid, alg=self.alg)]}


def credentials_from_secret(document: Mapping[str, Any]) -> SmartCredentials:
    """`{"type": "smart", "client_id", "private_key_pem", "kid", "alg", "scopes", "token_endpoint"?}`."""
    if document.get("type") != "smart":
        raise SmartConfigError("type: must be 'smart'")
    problems = [
        name
        for name in ("client_id", "private_key_pem", "kid", "scopes")
        if not isinstance(document.get(name), str) or not document[name].strip()
    ]
    if problems:
        raise SmartConfigError(f"missing or empty: {', '.join(problems)}")
    alg = document.get("alg", "RS384")
    if alg not in ALGORITHMS:
        raise SmartConfigError(f"alg: must be one of {', '.join(ALGORITHMS)}")
    token_endpoint = document.get("token_endpoint")
    if token_endpoint is not None and not (
        isinstance(token_endpoint, str) and token_endpoint.startswith(("https://", *_LOCAL_HTTP))
    ):
        raise SmartConfigError("token_endpoint: must be an https:// URL")
    try:
        key = load_private_key(document["private_key_pem"])
        checked_alg = check_key_matches(key, str(alg))
    except JwsError as exc:
        raise SmartConfigError(f"private_key_pem: {exc}") from None
    return SmartCredentials(
        client_id=document["client_id"].strip(),
        private_key=key,
        kid=document["kid"].strip(),
        alg=checked_alg,
        scopes=" ".join(document["scopes"].split()),
        token_endpoint=token_endpoint,
    )


def client_assertion(credentials: SmartCredentials, token_endpoint: str, *, now: float | None = None) -> str:
    """A one-time signed JWT for the token request (never log it)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": credentials.client_id,
        "sub": credentials.client_id,
        "aud": token_endpoint,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
        "jti": uuid.uuid4().hex,
    }
    return encode(claims, credentials.private_key, alg=credentials.alg, kid=credentials.kid)


# -- discovery ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    token_endpoint: str
    auth_methods: tuple[str, ...]
    signing_algs: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes_supported: tuple[str, ...]


_discovery: dict[str, SmartConfiguration] = {}
_discovery_lock = threading.Lock()


def clear_discovery_cache() -> None:
    with _discovery_lock:
        _discovery.clear()


def _strings(document: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = document.get(name) or []
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def discover(base_url: str, http: httpx.Client) -> SmartConfiguration:
    """`<base>/.well-known/smart-configuration`, fetched once per base URL and cached."""
    url = base_url.rstrip("/") + "/" + WELL_KNOWN
    with _discovery_lock:
        cached = _discovery.get(url)
        if cached is not None:
            return cached
        try:
            response = http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise RetryableEhrError(f"SMART discovery failed ({type(exc).__name__})") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableEhrError(f"SMART discovery answered {response.status_code}", status=response.status_code)
        if response.status_code != 200:
            raise PermanentEhrError(
                f"SMART discovery answered {response.status_code}; set token_endpoint in the secret",
                status=response.status_code,
            )
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("token_endpoint"), str):
            raise PermanentEhrError("SMART discovery document has no token_endpoint")
        config = SmartConfiguration(
            token_endpoint=document["token_endpoint"],
            auth_methods=_strings(document, "token_endpoint_auth_methods_supported"),
            signing_algs=_strings(document, "token_endpoint_auth_signing_alg_values_supported"),
            grant_types=_strings(document, "grant_types_supported"),
            scopes_supported=_strings(document, "scopes_supported"),
        )
        _discovery[url] = config
        return config


# -- the auth -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is safe to report about the current token (never the token itself)."""

    expires_in: int
    scope: str
    fetches: int


class SmartBackendAuth(httpx.Auth):
    """Bearer tokens from a SMART Backend Services token endpoint, cached and shared across threads."""

    requires_request_body = True

    def __init__(
        self,
        credentials: SmartCredentials,
        fhir_base_url: str,
        *,
        discovery_base_url: str | None = None,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self._discovery_base = discovery_base_url or fhir_base_url
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
            transport=transport,
            headers={"User-Agent": "cal-ehr-bridge/0.1"},
        )
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._expires_in = 0
        self._scope = ""
        self._fetches = 0

    def __repr__(self) -> str:  # never show the token
        return f"SmartBackendAuth(client_id={self._credentials.client_id!r}, kid={self._credentials.kid!r})"

    @property
    def credentials(self) -> SmartCredentials:
        return self._credentials

    @property
    def token_fetches(self) -> int:
        return self._fetches

    def close(self) -> None:
        self._http.close()

    def token_endpoint(self) -> str:
        if self._credentials.token_endpoint:
            return self._credentials.token_endpoint
        config = discover(self._discovery_base, self._http)
        if config.auth_methods and "private_key_jwt" not in config.auth_methods:
            raise PermanentEhrError("the server does not accept private_key_jwt client authentication")
        if config.signing_algs and self._credentials.alg not in config.signing_algs:
            raise PermanentEhrError(f"the server does not accept {self._credentials.alg} client assertions")
        if config.grant_types and "client_credentials" not in config.grant_types:
            raise PermanentEhrError("the server does not offer the client_credentials grant")
        return config.token_endpoint

    def token(self) -> str:
        """The cached access token, fetched (once, under the lock) when missing or about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch_locked()
            assert self._token is not None
            return self._token

    def token_info(self) -> TokenInfo:
        self.token()
        return TokenInfo(expires_in=self._expires_in, scope=self._scope, fetches=self._fetches)

    def invalidate(self, token: str) -> None:
        """Drop `token` if it is still the cached one (a concurrent request may have renewed it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_locked(self) -> None:
        endpoint = self.token_endpoint()
        started = self._clock()
        form = {
            "grant_type": "client_credentials",
            "scope": self._credentials.scopes,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(self._credentials, endpoint, now=self._wall_clock()),
        }
        self._fetches += 1
        try:
            response = self._http.post(endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise RetryableEhrError(f"SMART token request failed ({type(exc).__name__})") from exc
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        status = response.status_code
        if status != 200:
            code = body.get("error")
            code = code if code in _OAUTH_ERRORS else "unknown"
            detail = f"SMART token request refused: {code} ({status})"
            if status >= 500 or status == 429 or code == "temporarily_unavailable":
                raise RetryableEhrError(detail, status=status)
            raise PermanentEhrError(detail + "; check client id, registered JWKS, kid, alg and scopes", status=status)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentEhrError("SMART token response has no access_token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise PermanentEhrError("SMART token response is not a bearer token")
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
        expires_in = int(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else DEFAULT_EXPIRES_IN
        self._token = token
        self._expires_in = expires_in
        self._scope = str(body.get("scope", self._credentials.scopes))
        self._renew_at = started + expires_in - min(REFRESH_MARGIN_SECONDS, expires_in / 2)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise NotImplementedError("SmartBackendAuth is for synchronous clients (the bridge is synchronous)")
        yield request  # pragma: no cover - makes this an async generator


def smart_auth_from_secret(
    document: Mapping[str, Any],
    fhir_base_url: str,
    *,
    timeout_seconds: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    discovery_base_url: str | None = None,
) -> SmartBackendAuth:
    """Build the auth from the Secrets Manager JSON document (see `credentials_from_secret`)."""
    return SmartBackendAuth(
        credentials_from_secret(document),
        fhir_base_url,
        discovery_base_url=discovery_base_url,
        timeout_seconds=timeout_seconds,
        transport=transport,
    )


def jwks_from_secret(document: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The public JWKS for a SMART secret document (what `calehr jwks` prints)."""
    return credentials_from_secret(document).public_jwks()
