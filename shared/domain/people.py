"""How people are named without PHI: a keyed hash of their normalised e-mail."""

from __future__ import annotations

import hashlib
import hmac


def person_key(email: str, key: bytes) -> str:
    """Keyed hash of a normalised e-mail: identifies a person in state and audit without PHI."""
    return hmac.new(key, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()[:32]
