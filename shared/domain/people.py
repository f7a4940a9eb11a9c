"""How people (and places they may name) are referred to without PHI: keyed hashes."""

from __future__ import annotations

import hashlib
import hmac

from shared.clinic.mapping import ClinicConfig, LocationMapping


def person_key(email: str, key: bytes) -> str:
    """Keyed hash of a normalised e-mail: identifies a person in state and audit without PHI."""
    return hmac.new(key, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def location_key(location: str, key: bytes) -> str:
    """Keyed hash of a normalised Cal.com location value (it may be the patient's own address)."""
    normalised = " ".join(location.strip().lower().split())
    return hmac.new(key, b"location:" + normalised.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def mapped_location(config: ClinicConfig, key_of_location: str | None, key: bytes) -> LocationMapping | None:
    """The clinic mapping's location whose `calcom` value has this keyed hash (`location_key`)."""
    if not key_of_location:
        return None
    return next((m for m in config.locations if location_key(m.calcom, key) == key_of_location), None)
