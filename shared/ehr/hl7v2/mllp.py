"""The MLLP client: one message in flight per connection, the connection reused within a container.

Framing: 0x0B + message (segments separated by CR) + 0x1C 0x0D. TLS (`mllps://`) verifies the
engine's certificate against the configured CA (and host name) and can present a client certificate;
plain TCP (`mllp://`) is only built when the deployment says the path is a VPN (see `endpoint`).

Every failure to get an ACK - refused or dropped connection, TLS failure, timeout, a frame that is not
one - is `SiuNoAckError` (retryable) and closes the connection, so a late ACK can never be read
as the answer to the next message. A reused connection that the engine closed while idle is detected
when the send finds it dead (or it ends before any byte of an answer) and the message is sent once more
on a fresh connection: with the same control id the engine can recognise a duplicate.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.ehr.hl7v2.ack import SiuNoAckError

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
#: An ACK is a few hundred bytes; anything this large is not one.
MAX_ACK_BYTES = 64 * 1024


class _StaleConnection(Exception):  # noqa: N818 - internal signal, never leaves this module
    """A reused connection was already closed by the peer: nothing was answered."""


def frame(message: str) -> bytes:
    """MLLP frame of one ER7 message (UTF-8, as MSH-18 declares)."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


def tls_context(
    ca_pem: str | None, client_cert_pem: str | None = None, client_key_pem: str | None = None
) -> ssl.SSLContext:
    """A client context: TLS 1.2+, the engine's certificate verified (against `ca_pem` when given, else the
    system store) with its host name, and an optional client certificate for mutual TLS."""
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert_pem:
        # `load_cert_chain` only reads files: a private directory that lives for this call only.
        with tempfile.TemporaryDirectory(prefix="mllp-") as folder:
            os.chmod(folder, 0o700)
            cert = Path(folder) / "client.pem"
            key = Path(folder) / "client.key"
            cert.write_text(client_cert_pem, encoding="ascii")
            key.touch(mode=0o600)
            key.write_text(client_key_pem or "", encoding="ascii")
            context.load_cert_chain(str(cert), str(key) if client_key_pem else None)
    return context


class MllpClient:
    """Sends one message and returns the engine's answer (the ACK text). Thread-safe; one connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        server_name: str | None = None,
        timeout_seconds: float = 10.0,
        connect: Callable[[tuple[str, int], float], socket.socket] = socket.create_connection,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._server_name = server_name or host
        self._timeout = timeout_seconds
        self._connect = connect
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        #: Connections opened so far (tests and the bench read it to see reuse).
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"MllpClient({self.host}:{self.port}, tls={self._ssl is not None})"

    def exchange(self, message: str) -> str:
        """Send `message` and wait for one framed answer; `SiuNoAckError` when none comes."""
        payload = frame(message)
        with self._lock:
            reused = self._sock is not None
            try:
                return self._exchange(payload, reused=reused)
            except _StaleConnection:
                self._close()
                return self._exchange(payload, reused=False)

    def close(self) -> None:
        with self._lock:
            self._close()

    # -- internals (called with the lock held) ------------------------------------------------
    def _close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _open(self) -> socket.socket:
        try:
            raw = self._connect((self.host, self.port), self._timeout)
        except TimeoutError:
            raise SiuNoAckError("timed out connecting to the interface engine") from None
        except OSError as exc:
            raise SiuNoAckError(f"cannot connect to the interface engine ({type(exc).__name__})") from None
        self.connections_opened += 1
        if self._ssl is None:
            return raw
        try:
            raw.settimeout(self._timeout)
            return self._ssl.wrap_socket(raw, server_hostname=self._server_name)
        except ssl.SSLCertVerificationError:
            raw.close()
            raise SiuNoAckError("TLS: the interface engine's certificate did not verify") from None
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise SiuNoAckError(f"TLS handshake with the interface engine failed ({type(exc).__name__})") from None

    def _exchange(self, payload: bytes, *, reused: bool) -> str:
        if self._sock is None:
            self._sock = self._open()
        sock = self._sock
        deadline = time.monotonic() + self._timeout
        try:
            sock.settimeout(self._timeout)
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                if reused:
                    raise _StaleConnection from None
                raise
            answer = self._read_frame(sock, deadline, reused=reused)
        except _StaleConnection:
            raise
        except TimeoutError:
            self._close()
            raise SiuNoAckError("timed out waiting for the ACK") from None
        except SiuNoAckError:
            self._close()
            raise
        except OSError as exc:
            self._close()
            raise SiuNoAckError(f"connection to the interface engine failed ({type(exc).__name__})") from None
        return answer

    def _read_frame(self, sock: socket.socket, deadline: float, *, reused: bool) -> str:
        buffer = b""
        while END_BLOCK not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                if reused and not buffer:
                    raise _StaleConnection
                raise SiuNoAckError("the interface engine closed the connection before the ACK")
            buffer += chunk
            if len(buffer) > MAX_ACK_BYTES:
                raise SiuNoAckError("the answer is larger than any ACK")
        body, _, rest = buffer.partition(END_BLOCK)
        start = body.find(START_BLOCK)
        if start < 0 or body[:start].strip() or rest:
            raise SiuNoAckError("the answer is not one MLLP frame")
        return body[start + 1 :].decode("utf-8", errors="replace")
