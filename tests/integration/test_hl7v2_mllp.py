"""The MLLP client over real sockets: TLS with the engine's CA (and mutual TLS), plain TCP, one connection
reused, an idle connection the engine closed, timeouts; the listener validates every message."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.ehr.hl7v2.ack import SiuNoAckError
from shared.ehr.hl7v2.mllp import MllpClient
from shared.sync.siu_writer import siu_writer

pytestmark = pytest.mark.integration

MESSAGE = "\r".join(
    [
        "MSH|^~\\&|CAL_EHR_BRIDGE|CALCOM|EHR|CLINIC|20250602140311+0000||SIU^S12^SIU_S12|{cid}|P|2.5.1",
        "SCH|L@Cal.com^CALCOM|L@Cal.com^CALCOM||||S12^New^HL70003|ROUTINE^Routine^HL70276|Normal^^HL70277|30|min"
        "|^^M30^20250610150000+0000^20250610153000+0000|||||^Cal EHR Bridge||||^Cal EHR Bridge|||||Booked^^HL70278",
        "PID|1||abc^^^CALCOM^PT||^^^^^^U",
        "RGS|1",
        "AIS|1||X^^L",
    ]
)


@dataclass
class Pki:
    ca_pem: str
    server: ssl.SSLContext
    client_cert_pem: str
    client_key_pem: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool, san: str | None = None
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pki(tmp: Path, *, require_client_cert: bool) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Test Interface CA", ca_key, _name("Test Interface CA"), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue("engine.test", server_key, ca.subject, ca_key, ca=False, san="localhost")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue("cal-ehr-bridge", client_key, ca.subject, ca_key, ca=False)
    (tmp / "server.pem").write_text(_pem(server))
    (tmp / "server.key").write_text(_key_pem(server_key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=_pem(ca))
    return Pki(_pem(ca), context, _pem(client), _key_pem(client_key))


@pytest.fixture
def tls_engine(tmp_path: Path) -> Iterator[tuple[Any, Pki]]:
    from devstack.mllp_listener import MllpListener

    pki = _pki(tmp_path, require_client_cert=True)
    with MllpListener(ssl_context=pki.server) as listener:
        yield listener, pki


@pytest.fixture
def plain_engine() -> Iterator[Any]:
    from devstack.mllp_listener import MllpListener

    with MllpListener() as listener:
        yield listener


def test_given_mutual_tls_then_messages_go_over_one_reused_connection(tls_engine: tuple[Any, Pki]) -> None:
    engine, pki = tls_engine
    secret = {
        "type": "mllp-tls",
        "ca_pem": pki.ca_pem,
        "client_cert_pem": pki.client_cert_pem,
        "client_key_pem": pki.client_key_pem,
        "server_name": "localhost",
    }
    writer = siu_writer(
        f"mllps://127.0.0.1:{engine.port}", secret, plaintext_allowed=False, timeout_seconds=5, breaker=None
    )
    client = writer.client
    assert isinstance(client, MllpClient)
    answers = [client.exchange(MESSAGE.format(cid=f"C{i}")) for i in range(3)]
    assert all(f"MSA|AA|C{i}" in answer for i, answer in enumerate(answers))
    assert client.connections_opened == 1 and engine.connections == 1
    assert [r.answer for r in engine.received] == ["AA", "AA", "AA"]


def test_given_a_certificate_from_another_ca_then_no_ack_and_retryable(
    tls_engine: tuple[Any, Pki], tmp_path: Path
) -> None:
    engine, _ = tls_engine
    (tmp_path / "other").mkdir()
    other = _pki(tmp_path / "other", require_client_cert=False)
    secret = {"type": "mllp-tls", "ca_pem": other.ca_pem, "server_name": "localhost"}
    writer = siu_writer(
        f"mllps://127.0.0.1:{engine.port}", secret, plaintext_allowed=False, timeout_seconds=5, breaker=None
    )
    with pytest.raises(SiuNoAckError, match="certificate did not verify"):
        writer.client.exchange(MESSAGE.format(cid="C1"))
    assert engine.received == []


def test_given_no_client_certificate_where_one_is_required_then_no_ack(tls_engine: tuple[Any, Pki]) -> None:
    engine, pki = tls_engine
    secret = {"type": "mllp-tls", "ca_pem": pki.ca_pem, "server_name": "localhost"}
    writer = siu_writer(
        f"mllps://127.0.0.1:{engine.port}", secret, plaintext_allowed=False, timeout_seconds=5, breaker=None
    )
    with pytest.raises(SiuNoAckError):
        writer.client.exchange(MESSAGE.format(cid="C1"))
    assert engine.received == []


def test_given_the_engine_closed_an_idle_connection_then_the_next_message_goes_on_a_new_one(plain_engine: Any) -> None:
    client = MllpClient("127.0.0.1", plain_engine.port, ssl_context=None, timeout_seconds=5)
    assert "MSA|AA|C1" in client.exchange(MESSAGE.format(cid="C1"))
    plain_engine.close_connections()
    assert "MSA|AA|C2" in client.exchange(MESSAGE.format(cid="C2"))
    assert client.connections_opened == 2


def test_given_no_ack_then_a_timeout_closes_the_connection_and_the_next_message_is_answered(plain_engine: Any) -> None:
    client = MllpClient("127.0.0.1", plain_engine.port, ssl_context=None, timeout_seconds=0.5)
    plain_engine.answer_next("silent")
    with pytest.raises(SiuNoAckError, match="timed out"):
        client.exchange(MESSAGE.format(cid="C1"))
    assert "MSA|AA|C2" in client.exchange(MESSAGE.format(cid="C2"))  # never the late answer to C1
    assert client.connections_opened == 2


def test_given_nothing_listens_then_no_ack(plain_engine: Any) -> None:
    port = plain_engine.port
    plain_engine.stop()
    client = MllpClient("127.0.0.1", port, ssl_context=None, timeout_seconds=1)
    with pytest.raises(SiuNoAckError, match="cannot connect"):
        client.exchange(MESSAGE.format(cid="C1"))


def test_given_an_invalid_message_then_the_listener_answers_ar(plain_engine: Any) -> None:
    client = MllpClient("127.0.0.1", plain_engine.port, ssl_context=None, timeout_seconds=5)
    broken = MESSAGE.format(cid="C1").replace("|S12^New^HL70003|", "||")  # SCH-6 is required
    assert "MSA|AR|C1" in client.exchange(broken)
    assert plain_engine.received[0].problem
