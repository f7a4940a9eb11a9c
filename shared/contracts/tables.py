"""Table keys, item prefixes and the attributes a role may read or write (shared/stores/, infra/constructs/)."""

from __future__ import annotations

from typing import Final

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"

# --- state table (shared/stores/lineages.py, cursors.py, id_map.py) ------------------------------------
#: The uid → lineage alias items (`uid#<booking uid>`); `audit <booking uid>` reads them.
UID_ALIAS_PREFIX: Final = "uid#"
#: A person's lineages and routing forms (`person#<person key>`).
PERSON_PREFIX: Final = "person#"
#: The reconciler's cursor item; with an organization, one per host (`cursor#reconcile#user#<id>`).
RECONCILE_CURSOR_PK: Final = "cursor#reconcile"
#: What listing lineages for drift checks reads of the state table.
LINEAGE_LISTING_ATTRIBUTES: Final = ("pk", "updated_at")

# --- review table (shared/stores/review.py) ----------------------------------------------------------
#: Partition key prefix of the items that hold message bodies (PHI).
REVIEW_BODY_PREFIX: Final = "body#"
#: Every attribute a review item may have except a body: what listings and `get` read (by name), and the
#: only attributes the read-only operator role and the console may read.
REVIEW_ITEM_ATTRIBUTES: Final = (
    "pk",
    "status",
    "reason",
    "detail",
    "trigger",
    "lineage_hash",
    "message_id",
    "parked_at",
    "closed_note",
    "closed_by",
    "closed_at",
    # which booking, on items parked by newer versions (PHI-free: the lineage key, a uid, an event type, a time)
    "lineage",
    "booking_uid",
    "event_type",
    "start",
)
#: What counting open review items reads (the reconcile function's backlog gauges).
REVIEW_BACKLOG_ATTRIBUTES: Final = ("pk", "status", "parked_at")
#: What closing a review item writes (`ReviewStore.close`), with its key.
REVIEW_CLOSE_ATTRIBUTES: Final = ("pk", "status", "closed_note", "closed_by", "closed_at")

# --- audit table (shared/stores/audit.py) -----------------------------------------------------------
#: The partition of the records an operator writes (`record_operator_action`).
OPERATOR_AUDIT_PREFIX: Final = "operator#"

# --- availability table (shared/stores/feeds.py) -----------------------------------------------------
#: A feed's items (`feed#<feed id>`) and the URL tokens' (`token#<token hash>`): all the feed function reads.
FEED_PREFIX: Final = "feed#"
TOKEN_PREFIX: Final = "token#"  # noqa: S105 - a key prefix, not a secret
