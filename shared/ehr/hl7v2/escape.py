"""HL7 v2 escaping (ER7, encoding characters `|^~\\&`): every value the bridge writes goes through here.

The delimiters become `\\F\\ \\S\\ \\R\\ \\T\\ \\E\\`; carriage returns, line feeds and every other C0
control character (which includes the MLLP framing bytes 0x0B and 0x1C) become hexadecimal escapes
(`\\X0D\\`), so no value can end a segment, open a field or break the frame.
"""

from __future__ import annotations

import re

FIELD = "|"
COMPONENT = "^"
REPETITION = "~"
ESCAPE = "\\"
SUBCOMPONENT = "&"
#: MSH-2 in the order the standard fixes: component, repetition, escape, subcomponent.
ENCODING_CHARACTERS = COMPONENT + REPETITION + ESCAPE + SUBCOMPONENT

_DELIMITERS = {
    ESCAPE: "\\E\\",
    FIELD: "\\F\\",
    COMPONENT: "\\S\\",
    REPETITION: "\\R\\",
    SUBCOMPONENT: "\\T\\",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPECIAL = re.compile(r"[\\|^~&]")


def _hex(match: re.Match[str]) -> str:
    return "\\X" + "".join(f"{ord(char):02X}" for char in match.group()) + "\\"


def escape(value: str) -> str:
    """One value (a component or subcomponent) as ER7 text: delimiters and control characters escaped."""
    escaped = _SPECIAL.sub(lambda m: _DELIMITERS[m.group()], value)
    return _CONTROL.sub(_hex, escaped)


def components(*values: str | None) -> str:
    """A field of components, each escaped; trailing empty components are dropped."""
    parts = [escape(v) if v else "" for v in values]
    while parts and not parts[-1]:
        parts.pop()
    return COMPONENT.join(parts)


def segment(name: str, *fields: str) -> str:
    """A segment from already-escaped fields; trailing empty fields are dropped."""
    parts = list(fields)
    while parts and not parts[-1]:
        parts.pop()
    return FIELD.join([name, *parts])
