"""What a lineage picks up from outside its own events: no-show marks that arrived before their booking, and
routing-form submissions of its patients.

Each join is one atomic write-and-read on a shared item (shared/stores/lineages.py): a no-show's worker adds
its marks to the uid's item and reads the lineage that claimed it; a booking's worker claims the uid and
reads the marks (`SyncService` claims the event's own uid when it resolves the lineage and passes the
marks in). A form's worker sets the person's `has_forms` flag and reads their lineages; a booking's worker
adds the lineage and reads the flag. Of two racing workers the later sees the earlier, so nothing is lost
between them (docs/sync-semantics.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from shared.calcom.models import BookingEvent
from shared.domain.decide import NoShowMark, apply_no_show_marks, no_show_marks
from shared.domain.forms import union_forms
from shared.domain.lineage_state import FormFact, LineageState
from shared.sync.ports import LineageStore


def _mark_json(mark: NoShowMark) -> str:
    return json.dumps(
        {"person_key": mark.person_key, "no_show": mark.no_show, "at": mark.at.isoformat(), "uid": mark.uid}
    )


def _mark(raw: str, uid: str) -> NoShowMark:
    fact = json.loads(raw)
    return NoShowMark(
        fact["person_key"], bool(fact["no_show"]), datetime.fromisoformat(fact["at"]), fact.get("uid", uid)
    )


class LineageJoins:
    def __init__(self, store: LineageStore, pseudonym_key: bytes, *, forms: bool) -> None:
        self._store = store
        self._key = pseudonym_key
        self._forms = forms  # the clinic mapping has routing forms

    def keep_no_show(self, event: BookingEvent) -> str:
        """A no-show for a booking not seen yet: keep its PHI-free marks (write first), then look for the
        lineage again (read after); "" when it is still unknown (the marks wait for the booking)."""
        return self._store.add_pending_marks(event.uid, [_mark_json(m) for m in no_show_marks(event, self._key)]) or ""

    def absorb(
        self, before: LineageState, after: LineageState, claimed: Mapping[str, Sequence[str]] | None = None
    ) -> LineageState:
        """`after` with the no-show marks kept for its new uids and the forms of its new patients. `claimed`:
        the marks of uids this attempt already claimed for the lineage (no second round trip for them)."""
        return self._absorb_forms(before, self._absorb_marks(before, after, claimed or {}))

    def _absorb_marks(
        self, before: LineageState, after: LineageState, claimed: Mapping[str, Sequence[str]]
    ) -> LineageState:
        marks: list[NoShowMark] = []
        for uid in sorted(set(after.uids) - set(before.uids)):
            raws = claimed[uid] if uid in claimed else self._store.claim_uid(uid, after.lineage).marks
            marks.extend(_mark(raw, uid) for raw in raws)
        if not marks:
            return after
        return after.model_copy(update={"participants": apply_no_show_marks(after.participants, marks)})

    def _absorb_forms(self, before: LineageState, after: LineageState) -> LineageState:
        if not self._forms:
            return after
        known = {pk for pk, p in before.participants.items() if p.added_at is not None}
        newcomers = sorted(pk for pk, p in after.participants.items() if p.added_at is not None and pk not in known)
        facts: list[FormFact] = []
        for pk in newcomers:
            if self._store.link_person(pk, after.lineage):
                facts.extend(FormFact.model_validate_json(raw) for raw in self._store.forms_of(pk))
        return union_forms(after, facts)
