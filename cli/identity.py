"""Who runs an operator command: the caller's AWS identity, as the audit trail records it.

Every operator action (retry, discard, redrive, reading a parked body) is recorded with the STS caller
identity of the credentials that did it, not the name of the local OS account. Where the ARN names a
person (an assumed-role session name, an IAM user, a federated user) that part is replaced by
`sha256:<16 hex>` of it: the trail can still answer "was it alice?" (`printf %s alice | sha256sum`)
without holding anyone's name.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cli.target import Target

HASH_PREFIX = "sha256:"


def _hashed(name: str) -> str:
    return HASH_PREFIX + hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]


def audit_identity(arn: str) -> str:
    """The caller ARN with the part that names a person hashed; roles, accounts and the root stay readable.

    `arn:aws:sts::111122223333:assumed-role/CalEhrBridge-prod-OperatorAdmin/alice@clinic.example` →
    `arn:aws:sts::111122223333:assumed-role/CalEhrBridge-prod-OperatorAdmin/sha256:…`.
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return _hashed(arn)
    prefix, resource = ":".join(parts[:5]), parts[5]
    service = parts[2]
    if service == "sts" and resource.startswith("assumed-role/") and resource.count("/") >= 2:
        role, session = resource[len("assumed-role/") :].split("/", 1)
        return f"{prefix}:assumed-role/{role}/{_hashed(session)}"
    if service == "sts" and resource.startswith("federated-user/"):
        return f"{prefix}:federated-user/{_hashed(resource[len('federated-user/') :])}"
    if resource.startswith("user/"):  # IAM users (moto's STS answers `sts::…:user/moto` for its default keys)
        return f"{prefix}:user/{_hashed(resource[len('user/') :])}"
    if service == "iam" and resource == "root":
        return arn
    return f"{prefix}:{_hashed(resource)}"


def caller_identity(target: Target) -> str:
    """The audit form of the identity behind `target`'s credentials (STS GetCallerIdentity needs no
    permission, so every operator can call it)."""
    return audit_identity(str(target.client("sts").get_caller_identity()["Arn"]))
