"""Whether one more record fits into what is left of a Lambda invocation.

A batch handler that starts a record it cannot finish is killed by the Lambda timeout: the whole
batch then comes back after the queue's visibility timeout, records already done included. Instead
the sync handler stops taking records when less than one EHR timeout plus a margin is left and
reports the untaken ones as batch item failures, so they come back on their own and nothing is lost.
"""

from __future__ import annotations

from typing import Protocol

from shared.settings import DEFAULT_MARGIN_SECONDS


class InvocationContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def has_time_for_one_more(
    context: InvocationContext | None, *, ehr_timeout_seconds: float, margin_seconds: float = DEFAULT_MARGIN_SECONDS
) -> bool:
    """True while at least `ehr_timeout_seconds + margin_seconds` of the invocation are left.

    Without a context (a direct call outside Lambda) there is no deadline, so the answer is True.
    """
    if context is None:
        return True
    return context.get_remaining_time_in_millis() >= (ehr_timeout_seconds + margin_seconds) * 1000
