"""RFC 5545 iCalendar for a busy feed: one VEVENT "Busy" per interval, UTC times, nothing else. Pure.

What Cal.com's ICS Feed calendar app does with a feed (packages/app-store/ics-feedcalendar in Cal.com's
repository): a plain GET without credentials, `ICAL.parse` (ical.js), then every VEVENT is busy time,
whatever its TRANSP; a VEVENT whose DTSTART has no VTIMEZONE is placed in a synthesized zone, so the
feed writes every time in UTC (`…Z`) and needs none. `X-WR-CALNAME` is the calendar's name in Cal.com.

The text written is fixed (summary "Busy", the feed's name, opaque UIDs): no patient data can reach
it. Lines are CRLF-terminated and folded at 75 octets; TEXT values are escaped (RFC 5545 §3.3.11).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from shared.domain.busy_time import BusyInterval

PRODID = "-//Cal EHR Bridge//EHR busy feed//EN"
UID_DOMAIN = "busy.cal-ehr-bridge"
CONTENT_TYPE = "text/calendar; charset=utf-8"
_MAX_OCTETS = 75


def escape_text(value: str) -> str:
    """An RFC 5545 TEXT value: backslash, semicolon, comma and newlines escaped; other controls dropped."""
    escaped = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    escaped = escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return "".join(ch for ch in escaped if ch == "\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F))


def fold(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets (continuations start with a space),
    never splitting a UTF-8 character."""
    out: list[str] = []
    current = ""
    size = 0
    limit = _MAX_OCTETS
    for ch in line:
        width = len(ch.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, _MAX_OCTETS
        current += ch
        size += width
    out.append(current)
    return "\r\n".join(out)


def utc_stamp(moment: datetime) -> str:
    """A DATE-TIME in UTC form (`20250612T140000Z`)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def render_feed(
    calendar_name: str, intervals: Iterable[BusyInterval], *, generated_at: datetime, refresh_minutes: int = 15
) -> str:
    """The feed document. `generated_at` is the DTSTAMP (when this copy of the feed was made)."""
    stamp = utc_stamp(generated_at)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{escape_text(calendar_name)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:PT{max(1, refresh_minutes)}M",
        f"X-PUBLISHED-TTL:PT{max(1, refresh_minutes)}M",
    ]
    for interval in sorted(intervals):
        lines += [
            "BEGIN:VEVENT",
            f"UID:{interval.key}@{UID_DOMAIN}",
            f"DTSTAMP:{stamp}",
            f"DTSTART:{utc_stamp(interval.start)}",
            f"DTEND:{utc_stamp(interval.end)}",
            "SUMMARY:Busy",
            "CLASS:PRIVATE",
            "TRANSP:OPAQUE",
            f"STATUS:{'TENTATIVE' if interval.status_class == 'tentative' else 'CONFIRMED'}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)
