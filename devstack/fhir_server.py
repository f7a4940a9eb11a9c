"""Run the local in-memory FHIR R4 server (``devstack/fhir-server/server.mjs``) from Python.

The server is Medplum's open-source FHIR engine (``@medplum/fhir-router`` + ``MemoryRepository``) behind a
small Node HTTP wrapper that adds resource validation, required-code checks, ETag/Location headers and
test-only endpoints (``POST /$reset``, ``POST /$fault``, static ``GET /metadata``).

    with LocalFhirServer() as fhir:
        httpx.post(f"{fhir.base_url}/Patient", json={...})
        fhir.fault(status=503, count=2, retryAfter=1, paths="Appointment")
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

SERVER_DIR = Path(__file__).resolve().parent / "fhir-server"
NPM_INSTALL_HINT = "run `make deps` (or `npm ci` in devstack/fhir-server)"

# Python-style aliases accepted by LocalFhirServer.fault(); the wire format is camelCase.
_FAULT_KEY_ALIASES = {"retry_after": "retryAfter", "delay_ms": "delayMs"}


class LocalFhirServer:
    """A local FHIR R4 server in a ``node`` child process, listening on 127.0.0.1.

    ``bearer_token`` sets ``FHIR_REQUIRE_BEARER`` for the child: every request except ``/$reset``,
    ``/$fault`` and ``/metadata`` must then carry ``Authorization: Bearer <token>``. ``snapshot`` sets
    ``FHIR_SNAPSHOT``: the server loads its resources from that file and writes them back after changes.
    ``latency_ms`` passes ``--latency-ms``: every FHIR request waits that long before it is answered, like a
    cloud EHR's round trip (``set_latency`` changes it while running).
    """

    def __init__(
        self,
        *,
        server_dir: Path = SERVER_DIR,
        node: str = "node",
        bearer_token: str | None = None,
        startup_timeout: float = 30.0,
        log_requests: bool = False,
        snapshot: Path | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        if not 0 <= latency_ms <= 60_000:
            raise ValueError("latency_ms must be between 0 and 60000")
        self._server_dir = server_dir
        self._node = node
        self._bearer_token = bearer_token
        self._startup_timeout = startup_timeout
        self._log_requests = log_requests
        self._snapshot = snapshot
        self._latency_ms = latency_ms
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._base_url: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Spawn the server (``port=0``: ephemeral) and return its base URL once it is listening."""
        if self._proc is not None:
            raise RuntimeError("LocalFhirServer is already running")
        node = shutil.which(self._node)
        if node is None:
            raise RuntimeError(f"Node.js executable {self._node!r} not found on PATH; install Node >= 20")
        if not (self._server_dir / "node_modules" / "@medplum" / "fhir-router").is_dir():
            raise RuntimeError(f"FHIR server dependencies missing in {self._server_dir}: {NPM_INSTALL_HINT}")

        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FHIR_REQUIRE_BEARER", "FHIR_LOG", "FHIR_SNAPSHOT", "FHIR_LATENCY_MS")
        }
        env["PORT"] = str(port)
        if self._bearer_token:
            env["FHIR_REQUIRE_BEARER"] = self._bearer_token
        if self._log_requests:
            env["FHIR_LOG"] = "1"
        if self._snapshot is not None:
            env["FHIR_SNAPSHOT"] = str(self._snapshot.resolve())
        # stderr goes to a file, not a pipe: an undrained pipe would eventually block the server.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [node, "server.mjs", "--latency-ms", f"{self._latency_ms:g}"],
            cwd=self._server_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            self._base_url = self._read_listening_line(self._proc)
        except BaseException:
            self.stop()
            raise
        return self._base_url

    def _read_listening_line(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None
        stdout = proc.stdout
        lines: queue.Queue[bytes] = queue.Queue(maxsize=1)
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self._startup_timeout)
        except queue.Empty:
            raise RuntimeError(
                f"FHIR server did not start within {self._startup_timeout:.0f} s{self._stderr_tail()}"
            ) from None
        try:
            url = json.loads(line)["listening"]
        except (ValueError, KeyError, TypeError):
            code = proc.poll()
            raise RuntimeError(
                f"FHIR server failed to start (exit code {code}, stdout {line[:200]!r}){self._stderr_tail()}"
                + ("" if code is None else f"\nIf a package is missing: {NPM_INSTALL_HINT}")
            ) from None
        if not isinstance(url, str):
            raise RuntimeError(f"FHIR server printed an unexpected listening line: {line!r}")
        return url

    def _stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")[-limit:].strip()
        return f"\n--- node stderr (tail) ---\n{text}" if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM), then kill it if it has not exited after ``timeout`` seconds."""
        proc, self._proc, self._base_url = self._proc, None, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("LocalFhirServer is not running; call start() first")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr (for debugging failed tests)."""
        return self._stderr_tail()

    # -- test-only endpoints ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Delete every resource and clear any injected fault."""
        self._post("/$reset", {})

    def fault(self, **spec: Any) -> None:
        """Make the next ``count`` matching requests fail (see ``POST /$fault`` in server.mjs).

        Keys: ``status`` (HTTP status to answer, OperationOutcome body), ``count`` (default 1),
        ``retryAfter``/``retry_after`` (Retry-After header value), ``delayMs``/``delay_ms`` (wait before
        answering; without ``status`` the request is then served normally), ``paths`` (substring or list
        of substrings of the URL path; default every request), ``drop`` (close the connection unanswered).
        """
        body = {_FAULT_KEY_ALIASES.get(key, key): value for key, value in spec.items()}
        if not body:
            raise ValueError("fault() needs a spec; use clear_faults() to remove a fault")
        self._post("/$fault", body)

    def set_latency(self, latency_ms: float) -> None:
        """Answer every FHIR request after ``latency_ms`` from now on (``POST /$latency``)."""
        self._post("/$latency", {"ms": latency_ms})
        self._latency_ms = latency_ms

    def clear_faults(self) -> None:
        self._post("/$fault", {})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            response = client.post(f"{self.base_url}{path}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text[:500]}")
