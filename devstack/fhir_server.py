"""Run the local in-memory FHIR R4 server (``devstack/fhir-server/server.mjs``) from Python.

The server is Medplum's open-source FHIR engine (``@medplum/fhir-router`` + ``MemoryRepository``) behind a
Node HTTP wrapper that adds resource validation, required-code checks, ETag/Location headers, strict or
lenient search handling, a scheduling dialect per instance (Schedule/Slot rules, ``$find``/``$book``, Oracle-
and Canvas-style booking), FHIR Subscription delivery (R4 rest-hook and the R5 backport) and test-only
endpoints (``POST /$reset``, ``POST /$fault``, ``/$scheduling``, ``/$take-slot``, ``/$subscriptions``).
What each behaviour keeps of the real systems: docs/ehr-support.md, "Local stand-ins".

    with LocalFhirServer(scheduling="epic") as fhir:
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
SCHEDULING_DIALECTS = ("generic", "argonaut", "ihe", "epic", "oracle", "canvas")
_SCHEDULING_OPTION_ALIASES = {
    "slot_consistency": "slotConsistency",
    "proposal_ttl_seconds": "proposalTtlSeconds",
    "epic_taken_status": "epicTakenStatus",
    "epic_taken_code": "epicTakenCode",
    "double_booking_allowed": "doubleBookingAllowed",
    "race_window_ms": "raceWindowMs",
}
_SUBSCRIPTION_ENV = {
    "style": "FHIR_SUBSCRIPTION_STYLE",
    "attempts": "FHIR_SUBSCRIPTION_ATTEMPTS",
    "retry_ms": "FHIR_SUBSCRIPTION_RETRY_MS",
    "timeout_ms": "FHIR_SUBSCRIPTION_TIMEOUT_MS",
    "heartbeat_scale": "FHIR_HEARTBEAT_SCALE",
}
_CHILD_ENV = (
    "FHIR_REQUIRE_BEARER",
    "FHIR_LOG",
    "FHIR_SNAPSHOT",
    "FHIR_LATENCY_MS",
    "FHIR_SCHEDULING",
    "FHIR_SEARCH_HANDLING",
    *_SUBSCRIPTION_ENV.values(),
)


def missing_prerequisites(server_dir: Path = SERVER_DIR, node: str = "node") -> str | None:
    """Why the server cannot start here (no Node.js, no installed packages), or None."""
    if shutil.which(node) is None:
        return f"{node} is not on PATH"
    if not (server_dir / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return f"{server_dir / 'node_modules'} is missing: {NPM_INSTALL_HINT}"
    return None


class LocalFhirServer:
    """A local FHIR R4 server in a ``node`` child process, listening on 127.0.0.1.

    ``bearer_token`` sets ``FHIR_REQUIRE_BEARER`` for the child: every request except ``/$reset``,
    ``/$fault`` and ``/metadata`` must then carry ``Authorization: Bearer <token>``. ``snapshot`` sets
    ``FHIR_SNAPSHOT``: the server loads its resources from that file and writes them back after changes.
    ``latency_ms`` passes ``--latency-ms``: every FHIR request waits that long before it is answered, like a
    cloud EHR's round trip (``set_latency`` changes it while running). ``scheduling`` picks the scheduling
    dialect (``--scheduling``; ``set_scheduling`` changes it while running), ``search_handling`` what an unknown
    search parameter gets (``strict``: 400, ``lenient``: ignored). ``subscriptions`` sets delivery:
    ``style`` (``r4`` | ``medplum``), ``attempts``, ``retry_ms``, ``timeout_ms``, ``heartbeat_scale``.
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
        scheduling: str = "generic",
        search_handling: str = "strict",
        subscriptions: dict[str, Any] | None = None,
    ) -> None:
        if not 0 <= latency_ms <= 60_000:
            raise ValueError("latency_ms must be between 0 and 60000")
        if scheduling not in SCHEDULING_DIALECTS:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULING_DIALECTS)}")
        if search_handling not in ("strict", "lenient"):
            raise ValueError("search_handling must be strict or lenient")
        unknown = set(subscriptions or {}) - set(_SUBSCRIPTION_ENV)
        if unknown:
            raise ValueError(f"unknown subscription settings: {', '.join(sorted(unknown))}")
        self._server_dir = server_dir
        self._node = node
        self._bearer_token = bearer_token
        self._startup_timeout = startup_timeout
        self._log_requests = log_requests
        self._snapshot = snapshot
        self._latency_ms = latency_ms
        self._scheduling = scheduling
        self._search_handling = search_handling
        self._subscriptions = dict(subscriptions or {})
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

        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV}
        for key, value in self._subscriptions.items():
            env[_SUBSCRIPTION_ENV[key]] = str(value)
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
            [
                node,
                "server.mjs",
                "--latency-ms",
                f"{self._latency_ms:g}",
                "--scheduling",
                self._scheduling,
                "--search-handling",
                self._search_handling,
            ],
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

    def set_scheduling(self, mode: str, **options: Any) -> dict[str, Any]:
        """Switch the scheduling dialect (and its options) while running; drops open ``$find`` proposals."""
        body = {"mode": mode, "options": {_SCHEDULING_OPTION_ALIASES.get(k, k): v for k, v in options.items()}}
        described: dict[str, Any] = self._post("/$scheduling", body)
        return described

    def take_slot(
        self, slot: str, *, appointment: bool = False, status: str = "busy", patient: str | None = None
    ) -> Any:
        """The front desk takes ``Slot/<id>`` (and books a non-bridge Appointment into it when asked)."""
        body: dict[str, Any] = {"slot": slot, "appointment": appointment, "status": status}
        if patient:
            body["patient"] = patient
        return self._post("/$take-slot", body)

    def subscription_deliveries(self, *, wait: bool = True) -> list[dict[str, Any]]:
        """Every notification attempt so far (``wait``: after the pending deliveries have finished)."""
        with httpx.Client(trust_env=False, timeout=40.0) as client:
            response = client.get(f"{self.base_url}/$subscriptions", params={"wait": "1"} if wait else {})
        response.raise_for_status()
        deliveries: list[dict[str, Any]] = response.json()["deliveries"]
        return deliveries

    def subscription_fault(self, mode: str | None, *, count: int = 1, delay_ms: int = 0) -> None:
        """Drop, duplicate, delay or reorder the next ``count`` notifications (``None`` clears)."""
        fault = {} if mode is None else {"mode": mode, "count": count, "delayMs": delay_ms}
        self._post("/$subscriptions", {"fault": fault})

    def subscription_settings(self, **settings: Any) -> None:
        """Change delivery settings (``style``, ``attempts``, ``retry_ms``, ``timeout_ms``, ``heartbeat_scale``)."""
        names = {"retry_ms": "retryMs", "timeout_ms": "timeoutMs", "heartbeat_scale": "heartbeatScale"}
        self._post("/$subscriptions", {"settings": {names.get(k, k): v for k, v in settings.items()}})

    def heartbeat(self, subscription_id: str) -> None:
        self._post("/$heartbeat", {"subscription": subscription_id})

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            response = client.post(f"{self.base_url}{path}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"POST {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()
