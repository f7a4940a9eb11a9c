"""Which operator role a command needs, and the one line the CLI prints when AWS says no.

The stack creates two roles (`infra/constructs/operators.py`): `OperatorReadOnly` for on-call (review
items without bodies, the audit trail, queue depths, sync status) and `OperatorAdmin` for everything
that changes something or reads patient data (retry, discard, redrive, pause/resume, `--with-body`,
reconcile, doctor). An AccessDenied from AWS becomes `calehr: access denied … needs the <role> role`.
"""

from __future__ import annotations

from collections.abc import Sequence

from botocore.exceptions import ClientError

from shared.contracts.deployment import OUTPUT_OPERATOR_ADMIN_ROLE, OUTPUT_OPERATOR_READ_ONLY_ROLE

READ_ONLY = "OperatorReadOnly"
ADMIN = "OperatorAdmin"
#: The stack output holding each role's ARN.
ROLE_OUTPUTS = {READ_ONLY: OUTPUT_OPERATOR_READ_ONLY_ROLE, ADMIN: OUTPUT_OPERATOR_ADMIN_ROLE}

#: (group, command) → the role it needs; `None` as the command stands for the group's only command.
_NEEDS: dict[tuple[str, str | None], str] = {
    ("review", "list"): READ_ONLY,
    ("review", "show"): READ_ONLY,
    ("review", "retry"): ADMIN,
    ("review", "discard"): ADMIN,
    ("dlq", "redrive"): ADMIN,
    ("sync", "status"): READ_ONLY,
    ("sync", "pause"): ADMIN,
    ("sync", "resume"): ADMIN,
    ("audit", None): READ_ONLY,
    ("reconcile", None): ADMIN,
    ("doctor", None): ADMIN,
    # against a stack the drift check is queued for the sync function (`verify --queue`)
    ("verify", None): ADMIN,
    # a feed URL is a credential; a sync or a roster check uses the EHR's and Cal.com's secrets
    ("availability", "feed-url"): ADMIN,
    ("availability", "rotate"): ADMIN,
    ("availability", "sync"): ADMIN,
    ("providers", "check"): ADMIN,
    # the console reads the EHR (participants only after an audited reveal)
    ("console", None): ADMIN,
}
#: Options that make a read-only command an admin one (they read patient data).
_ADMIN_FLAGS: dict[tuple[str, str | None], str] = {("review", "show"): "--with-body"}
#: Options that make an admin command a read-only one (they change nothing).
_READ_ONLY_FLAGS: dict[tuple[str, str | None], str] = {("dlq", "redrive"): "--dry-run"}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}


def command_of(args: Sequence[str]) -> tuple[str, str | None]:
    """(group, command) of a command line: its first two words that are not options."""
    words = [a for a in args if not a.startswith("-")]
    group = words[0] if words else ""
    command = words[1] if len(words) > 1 and (group, words[1]) in _NEEDS else None
    return group, command


def required_role(args: Sequence[str]) -> str | None:
    """The operator role a command line needs, or None for commands that use no AWS resources."""
    key = command_of(args)
    role = _NEEDS.get(key)
    if role == READ_ONLY and key in _ADMIN_FLAGS and _ADMIN_FLAGS[key] in args:
        return ADMIN
    if role == ADMIN and key in _READ_ONLY_FLAGS and _READ_ONLY_FLAGS[key] in args:
        return READ_ONLY
    return role


def denied_client_error(exc: BaseException) -> ClientError | None:
    """The AWS AccessDenied error behind `exc` (itself or a cause, e.g. a store error wrapping it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClientError) and _denied(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _denied(error: ClientError) -> bool:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    if code in _DENIED_CODES or code.endswith(("AccessDenied", "AccessDeniedException")):
        return True
    # Some endpoints answer a bare 403 whose body says AccessDenied (moto does for JSON-protocol services).
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 403 and "AccessDenied" in str(details.get("Message", ""))


def access_denied_line(exc: BaseException, args: Sequence[str]) -> str | None:
    """One line naming the role the command needs, when AWS refused it; None for any other failure."""
    error = denied_client_error(exc)
    if error is None:
        return None
    code = str(error.response.get("Error", {}).get("Code", ""))
    code = "AccessDenied" if not code or code.isdigit() else code
    role = required_role(args)
    group, command = command_of(args)
    name = " ".join(word for word in (group, command) if word)
    need = f"the {role} role (stack output {ROLE_OUTPUTS[role]})" if role else "credentials allowed to do this"
    return f"access denied by AWS ({error.operation_name}: {code}): `{name}` needs {need}"
