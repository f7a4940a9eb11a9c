"""An `hl7v2` EHR endpoint from deployment settings: URL, TLS material secret, plaintext opt-in.

    mllps://engine.example.internal:6661     TLS (the default and the only choice over the internet)
    mllp://10.20.0.15:6661                   plain TCP: refused unless the deployment says the path is
                                             a VPN (EHR_MLLP_PLAINTEXT / a route's `mllp_plaintext`)

The endpoint's auth secret holds the TLS material (never in the environment):

    {"type": "mllp-tls",
     "ca_pem": "-----BEGIN CERTIFICATE-----...",          // the engine's CA; omitted: system CAs
     "client_cert_pem": "...", "client_key_pem": "...",   // optional: mutual TLS
     "server_name": "engine.hospital.example"}            // optional: name on the engine's certificate
    {"type": "none"}                                      // mllps:// with system CAs, or mllp:// (VPN)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any

from shared.ehr.hl7v2.mllp import MllpClient, tls_context
from shared.ehr.profiles import ProfileError

MLLP_URL = re.compile(r"^(?P<scheme>mllps?)://(?P<host>[A-Za-z0-9.\-]{1,253}):(?P<port>\d{1,5})$")
_PEM_KEYS = ("ca_pem", "client_cert_pem", "client_key_pem")


def parse_mllp_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of an `mllps://host:port` or `mllp://host:port` URL."""
    match = MLLP_URL.match(url)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ProfileError("the hl7v2 endpoint must be mllps://<host>:<port> (or mllp:// over a VPN)")
    return match["host"], int(match["port"]), match["scheme"] == "mllps"


def _tls(document: Mapping[str, Any]) -> tuple[ssl.SSLContext, str | None]:
    values = {key: document.get(key) for key in (*_PEM_KEYS, "server_name")}
    if any(v is not None and not isinstance(v, str) for v in values.values()):
        raise ProfileError("mllp-tls secret: ca_pem, client_cert_pem, client_key_pem and server_name are strings")
    if bool(values["client_cert_pem"]) != bool(values["client_key_pem"]):
        raise ProfileError("mllp-tls secret: client_cert_pem and client_key_pem go together")
    try:
        context = tls_context(values["ca_pem"], values["client_cert_pem"], values["client_key_pem"])
    except (ssl.SSLError, ValueError, OSError):
        # Never the PEM text: it may be a private key.
        raise ProfileError("mllp-tls secret: the CA or the client certificate/key does not load") from None
    return context, values["server_name"]


def mllp_client(
    base_url: str,
    secret: Mapping[str, Any] | None,
    *,
    plaintext_allowed: bool,
    timeout_seconds: float,
) -> MllpClient:
    """The MLLP client of one `hl7v2` endpoint (one connection per container)."""
    host, port, tls = parse_mllp_url(base_url)
    kind = (secret or {}).get("type", "none")
    if kind not in ("none", "mllp-tls"):
        raise ProfileError("an hl7v2 endpoint's secret type must be mllp-tls or none")
    context: ssl.SSLContext | None = None
    server_name = None
    if tls:
        context, server_name = _tls(secret or {}) if kind == "mllp-tls" else (tls_context(None), None)
    elif kind == "mllp-tls":
        raise ProfileError("an mllp-tls secret needs an mllps:// endpoint")
    elif not plaintext_allowed:
        raise ProfileError("mllp:// is plain TCP: allowed only over a VPN, with EHR_MLLP_PLAINTEXT=true")
    return MllpClient(host, port, ssl_context=context, server_name=server_name, timeout_seconds=timeout_seconds)
