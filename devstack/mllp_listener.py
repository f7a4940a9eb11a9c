"""A local HL7 v2 interface engine for the dev stack and the tests: an MLLP listener on 127.0.0.1.

Every message is parsed and validated with hl7apy (strict, against the SIU structure of its version,
an implementation independent of the bridge's) and answered like an engine in original mode:

* AA for a valid SIU message; a control id it accepted before is acknowledged again without being
  applied twice (`duplicates` counts them);
* AR (ERR 101) for anything that does not parse or validate, or is not an SIU S12-S26 message;
* on demand, for the next messages (`answer_next`): `AE:<code>`, `AR`, `silent` (no ACK, the
  connection stays open), `drop` (close after the message, no ACK), `drop-partial` (close while the
  message is still arriving), `lost-ack` (apply the message, then close without the ACK).

`appointments` holds what the engine knows per placer appointment id: the events applied and the
last filler status and start (for the dev walkthrough and assertions).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"
SIU_EVENTS = ("S12", "S13", "S14", "S15", "S17", "S26")


@dataclass
class Received:
    """One message the listener took in, and how it answered."""

    control_id: str
    event: str
    version: str
    text: str
    answer: str  # AA, AE, AR, silent, drop, drop-partial
    problem: str = ""  # why it was rejected (an exception class name, never message content)


@dataclass
class EngineAppointment:
    events: list[str] = field(default_factory=list)
    status: str = ""
    start: str = ""
    patients: int = 0


class MllpListener:
    """`with MllpListener() as engine: engine.port`. Thread-safe; one thread per connection."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        on_message: Callable[[Received], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._script: list[str] = []
        self._accepted: set[str] = set()
        self.received: list[Received] = []
        self.appointments: dict[str, EngineAppointment] = {}
        self.duplicates = 0
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._on_message = on_message
        self._ssl = ssl_context
        listener = self

        class _Connection(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                listener._serve(self.request)

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = _Server((host, port), _Connection)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mllp-listener", daemon=True)

    # -- control ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'mllps' if self._ssl else 'mllp'}://127.0.0.1:{self.port}"

    def answer_next(self, *answers: str) -> None:
        """Answers for the next messages, in order (`AE:207`, `AR`, `silent`, `drop`, `drop-partial`)."""
        with self._lock:
            self._script.extend(answers)

    def close_connections(self) -> None:
        """Close every open connection (an engine restarting, or dropping idle connections)."""
        with self._lock:
            open_now, self._open = list(self._open), set()
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._accepted.clear()
            self.received.clear()
            self.appointments.clear()
            self.duplicates = 0
            self.connections = 0

    def start(self) -> MllpListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MllpListener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------------
    def _next_answer(self) -> str:
        with self._lock:
            return self._script.pop(0) if self._script else "AA"

    def _serve(self, raw: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        try:
            sock = self._ssl.wrap_socket(raw, server_side=True) if self._ssl else raw
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self._lock:
            self._open.add(sock)
        with contextlib.closing(sock):
            buffer = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                if self._peek_drop_partial(buffer):
                    return
                while END_BLOCK in buffer:
                    framed, _, buffer = buffer.partition(END_BLOCK)
                    text = framed[framed.find(START_BLOCK) + 1 :].decode("utf-8", errors="replace")
                    reply = self._handle(text)
                    if reply in ("drop", "lost-ack"):
                        return
                    if reply == "silent":
                        continue
                    try:
                        sock.sendall(START_BLOCK + reply.encode("utf-8") + END_BLOCK)
                    except OSError:
                        return

    def _peek_drop_partial(self, buffer: bytes) -> bool:
        """`drop-partial`: close as soon as a message has started arriving, before its end."""
        with self._lock:
            if self._script and self._script[0] == "drop-partial" and START_BLOCK in buffer:
                self._script.pop(0)
                self.received.append(Received("", "", "", "", "drop-partial"))
                return True
        return False

    def _handle(self, text: str) -> str:
        fields = text.split("\r", 1)[0].split("|")
        control_id = fields[9] if len(fields) > 9 else ""
        version = fields[11] if len(fields) > 11 else "2.5.1"
        event = fields[8].split("^")[1] if len(fields) > 8 and "^" in fields[8] else ""
        problem = self._validate(text, event)
        answer = "AR" if problem else self._next_answer()
        record = Received(control_id, event, version, text, answer.split(":", 1)[0], problem)
        with self._lock:
            self.received.append(record)
            if answer in ("AA", "lost-ack"):
                if control_id in self._accepted:
                    self.duplicates += 1
                else:
                    self._accepted.add(control_id)
                    self._apply(text, event)
        if self._on_message:
            self._on_message(record)
        if answer in ("silent", "drop", "lost-ack"):
            return answer
        code, _, error = answer.partition(":")
        return self._ack(code, control_id, event, version, error or ("101" if problem else ""))

    @staticmethod
    def _validate(text: str, event: str) -> str:
        if event not in SIU_EVENTS:
            return "not an SIU S12-S26 message"
        try:
            message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
            message.validate()
        except Exception as exc:  # noqa: BLE001 - any parse or validation failure is an AR
            return type(exc).__name__
        return ""

    def _apply(self, text: str, event: str) -> None:
        segments = {line.split("|", 1)[0]: line.split("|") for line in reversed(text.split("\r"))}
        sch = segments.get("SCH", [])
        placer = sch[1].split("^")[0] if len(sch) > 1 else ""
        appointment = self.appointments.setdefault(placer, EngineAppointment())
        appointment.events.append(event)
        appointment.status = sch[25].split("^")[0] if len(sch) > 25 else ""
        timing = sch[11].split("^") if len(sch) > 11 else []
        appointment.start = timing[3] if len(timing) > 3 else ""
        appointment.patients = sum(1 for line in text.split("\r") if line.startswith("PID|"))

    @staticmethod
    def _ack(code: str, control_id: str, event: str, version: str, error: str) -> str:
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        lines = [
            f"MSH|^~\\&|EHR|CLINIC|CAL_EHR_BRIDGE|CALCOM|{now}||ACK^{event}^ACK|ACK{control_id[:17]}|P|{version}",
            f"MSA|{code}|{control_id}",
        ]
        if code != "AA" and error:
            if version == "2.3.1":
                lines.append(f"ERR|^^^{error}&Error&HL70357")
            else:
                lines.append(f"ERR|||{error}^Error^HL70357|E")
        return "\r".join(lines)


def stream_line(record: Received) -> str:
    """One line per message for the dev console: event, answer, control id, placer id, status, start."""
    sch = next((line.split("|") for line in record.text.split("\r") if line.startswith("SCH|")), [])
    placer = sch[1].split("^")[0] if len(sch) > 1 else "-"
    status = sch[25].split("^")[0] if len(sch) > 25 else "-"
    timing = sch[11].split("^") if len(sch) > 11 else []
    start = timing[3] if len(timing) > 3 else "-"
    problem = f"  ({record.problem})" if record.problem else ""
    control = record.control_id or "-"
    return f"  SIU^{record.event or '?':3} {record.answer:4} {control:20} {placer:34} {status:9} {start}{problem}"


ENGINE_COLUMNS = ("placer appointment id", "status", "start", "patients", "events")


def engine_rows(listener: MllpListener) -> list[dict[str, str]]:
    """What the engine holds per placer appointment id, as table rows."""
    return [
        {
            "placer appointment id": placer,
            "status": appointment.status,
            "start": appointment.start,
            "patients": str(appointment.patients),
            "events": ",".join(appointment.events),
        }
        for placer, appointment in sorted(listener.appointments.items())
    ]
