"""Where the clinic mapping comes from, and how a warm container picks up a change.

    source = ClinicConfigSource.from_uri("ssm:/cal-ehr-bridge/prod/clinic", max_age_seconds=300)
    config = source.get()          # cheap: re-reads the document only every `max_age_seconds`

Sources: `file:<path>` (local runs), `ssm:<parameter name>`, `appconfig:<application>/<environment>/<profile>`
(Powertools `parameters.get_app_config`). Every document goes through `shared.clinic.load.parse_config`.

* The **first** load must succeed: an invalid or unreadable document raises `ConfigError` (the sync
  function then fails closed and messages wait in the queue).
* After that, a refreshed document replaces the mapping only when it is valid as a whole. An invalid
  or unreadable one is rejected: the last good mapping stays in use, the rejection is logged with the
  number of problems only (never the document's text, which is the clinic's and may be long) and
  counted as `ClinicConfigRejected`. The next attempt is one `max_age_seconds` later.
* An unchanged document returns the very same `ClinicConfig` object, so callers can tell a change
  by identity (`is`) and keep per-mapping caches until it changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.clinic.load import parse_config
from shared.clinic.mapping import ClinicConfig, ConfigError
from shared.contracts import metrics as m
from shared.observability import count, logger

Kind = Literal["file", "ssm", "appconfig"]
#: Reads the document's text from its location (Powertools in AWS; an in-process fake in unit tests).
Fetch = Callable[["ConfigLocation"], str]

DEFAULT_MAX_AGE_SECONDS = 300


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    kind: Kind
    #: file path, SSM parameter name, or the AppConfig profile (configuration) name or id.
    name: str
    application: str = ""
    environment: str = ""

    @property
    def origin(self) -> str:
        """How problems name the document (a path or name, never content)."""
        if self.kind == "appconfig":
            return f"appconfig:{self.application}/{self.environment}/{self.name}"
        return self.name

    @classmethod
    def parse(cls, uri: str) -> ConfigLocation:
        scheme, _, location = uri.partition(":")
        if scheme == "file" and location:
            return cls(kind="file", name=location)
        if scheme == "ssm" and location:
            return cls(kind="ssm", name=location)
        if scheme == "appconfig":
            parts = location.split("/")
            if len(parts) == 3 and all(part.strip() for part in parts):
                application, environment, profile = parts
                return cls(kind="appconfig", name=profile, application=application, environment=environment)
            raise ConfigError([f"{uri}: expected appconfig:<application>/<environment>/<profile>"])
        raise ConfigError([f"{uri}: source must be file:<path>, ssm:<name> or appconfig:<app>/<env>/<profile>"])


def fetch_document(location: ConfigLocation) -> str:
    """The document's current text. Raises `ConfigError` when it cannot be read.

    SSM and AppConfig are always fetched fresh here (`force_fetch`): `ClinicConfigSource` decides how
    often, so Powertools' own cache must not add a second delay on top.
    """
    if location.kind == "file":
        try:
            return Path(location.name).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{location.name}: cannot be read ({exc.strerror})"]) from None
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only needed in AWS

    value: object
    try:
        if location.kind == "ssm":
            value = parameters.get_parameter(location.name, force_fetch=True)
        else:
            value = parameters.get_app_config(
                name=location.name,
                environment=location.environment,
                application=location.application,
                force_fetch=True,
            )
    except parameters.exceptions.GetParameterError as exc:
        # Powertools wraps the SDK error; its type (ClientError, EndpointConnectionError, ...) is what
        # is reported, never its text, which may echo request values.
        inner = exc.__cause__ or exc.__context__
        raise ConfigError([f"{location.origin}: cannot be read ({type(inner or exc).__name__})"]) from None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError([f"{location.origin}: not UTF-8 text"]) from None
    if not isinstance(value, str):
        raise ConfigError([f"{location.origin}: not a text document"])
    return value


def load_config(uri: str) -> ClinicConfig:
    """One read of a clinic mapping (`file:`, `ssm:` or `appconfig:`), validated (the CLI's; the sync keeps a
    `ClinicConfigSource`, which refreshes)."""
    location = ConfigLocation.parse(uri)
    return parse_config(fetch_document(location), origin=location.origin)


class ClinicConfigSource:
    """The current clinic mapping of one source, refreshed at most every `max_age_seconds`.

    Thread-safe: concurrent callers share one refresh; nobody ever sees a half-applied mapping.
    """

    def __init__(
        self,
        location: ConfigLocation,
        *,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        fetch: Fetch = fetch_document,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_seconds < 0:
            raise ValueError("max_age_seconds must not be negative")
        self.location = location
        self._max_age = max_age_seconds
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._config: ClinicConfig | None = None
        self._text: str | None = None
        self._next_refresh = 0.0

    @classmethod
    def from_uri(
        cls,
        uri: str,
        *,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        fetch: Fetch = fetch_document,
        clock: Callable[[], float] = time.monotonic,
    ) -> ClinicConfigSource:
        return cls(ConfigLocation.parse(uri), max_age_seconds=max_age_seconds, fetch=fetch, clock=clock)

    def get(self) -> ClinicConfig:
        """The mapping to use now. Raises `ConfigError` only while no valid mapping was ever loaded."""
        with self._lock:
            now = self._clock()
            if self._config is None or now >= self._next_refresh:
                self._refresh(now)
            assert self._config is not None  # _refresh either set it or raised
            return self._config

    def _refresh(self, now: float) -> None:
        first = self._config is None
        # Whatever happens, the next attempt waits a full interval (no retry storm against SSM/AppConfig).
        self._next_refresh = now + self._max_age
        try:
            text = self._fetch(self.location)
        except Exception as exc:  # a refresh never takes down a container that has a good mapping
            if first:
                raise
            self._reject("unreadable", exc)
            return
        if text == self._text:
            return
        try:
            config = parse_config(text, origin=self.location.origin)
        except ConfigError as exc:
            if first:
                raise
            self._reject("invalid", exc)
            return
        self._config, self._text = config, text
        if not first:
            count(m.CLINIC_CONFIG_RELOADED)
            logger.info("clinic configuration reloaded", extra={"config_source": self.location.kind})

    def _reject(self, why: str, exc: Exception) -> None:
        count(m.CLINIC_CONFIG_REJECTED)
        logger.warning(
            "clinic configuration rejected; keeping the last good one",
            extra={
                "config_source": self.location.kind,
                "why": why,
                "error": type(exc).__name__,
                # the count only: problem texts quote paths and may quote values of the document
                "problems": len(exc.problems) if isinstance(exc, ConfigError) else 1,
            },
        )
