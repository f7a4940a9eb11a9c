"""The clinic's hosts as Cal.com API v2 lists them: the organization's users, teams' members, the key's own user.

Paged with `take`/`skip`; an answer of another shape is a `CalcomPermanentError` (names only, no bodies).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.calcom.api import CalcomPermanentError

PAGE = 250
MAX_PAGES = 40


@dataclass(frozen=True, slots=True, order=True)
class Host:
    """A Cal.com user who can host bookings."""

    user_id: int
    email: str = ""
    source: str = "me"


class CalcomGetter(Protocol):
    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any: ...


def _data(document: Any, what: str) -> Any:
    if not isinstance(document, Mapping) or document.get("status") != "success" or "data" not in document:
        raise CalcomPermanentError(f"unexpected {what} answer")
    return document["data"]


def _pages(api: CalcomGetter, path: str) -> Iterator[Mapping[str, Any]]:
    for number in range(MAX_PAGES):
        rows = _data(api.get_json(path, {"take": str(PAGE), "skip": str(number * PAGE)}), path)
        if not isinstance(rows, list):
            raise CalcomPermanentError(f"unexpected {path} answer")
        yield from (row for row in rows if isinstance(row, Mapping))
        if len(rows) < PAGE:
            return
    raise CalcomPermanentError(f"{path}: more than {MAX_PAGES * PAGE} entries")


def calcom_hosts(api: CalcomGetter, *, org_id: int | None = None, team_ids: Sequence[int] = ()) -> list[Host]:
    """The clinic's hosts: the organization's users when `org_id` is given, the members of `team_ids`,
    and the key's own user; each once (by user id)."""
    hosts: dict[int, Host] = {}
    me = _data(api.get_json("/me"), "/me")
    if isinstance(me, Mapping) and isinstance(me.get("id"), int):
        hosts[me["id"]] = Host(me["id"], str(me.get("email") or ""), "me")
    if org_id is not None:
        for user in _pages(api, f"/organizations/{org_id}/users"):
            if isinstance(user.get("id"), int):
                hosts.setdefault(user["id"], Host(user["id"], str(user.get("email") or ""), f"org:{org_id}"))
    for team_id in team_ids:
        for membership in _pages(api, f"/teams/{team_id}/memberships"):
            member = membership.get("user")
            user_id = membership.get("userId")
            if isinstance(user_id, int) and membership.get("accepted", True) is not False:
                email = str(member.get("email") or "") if isinstance(member, Mapping) else ""
                hosts.setdefault(user_id, Host(user_id, email, f"team:{team_id}"))
    return sorted(hosts.values())
