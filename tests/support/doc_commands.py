"""The shell commands the docs tell a person to type, extracted so that a test can run each one.

Sources: README.md and docs/*.md. Commands come from fenced `bash`/`sh` blocks (continuation lines and
quotes spanning lines joined, comments dropped, `cmd1 && cmd2` and `cmd | cmd` kept whole) and from the
code spans of Markdown table rows (the runbook and the alarm tables). `calehr` commands are also taken
from code spans anywhere in the prose, for the flag check only (`calehr_invocations`).

Each command is then *classified*: run by the doc test (a `calehr` command, a CDK CLI synth/diff/deploy,
`calehr config validate FILE`), or named in `tests/support/aws_only_commands.py` with the reason it
cannot run here. A command that is neither fails the doc test, so a new one cannot slip in unchecked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHELL_FENCES = {"bash", "sh", "shell"}
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[^`]*)$")
_CODE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
#: Output shown inside a shell block (`# → HTTP 202 …`, `# {"checked": …}`) and prompts are not commands.
_COMMENT = re.compile(r"(?:^|\s)#(?:\s|$).*$")


@dataclass(frozen=True, slots=True)
class DocCommand:
    """One command as written, and where: `file:line` of its first line, and the kind of source."""

    text: str
    where: str
    source: str  # "fence" | "table" | "prose"

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a `#` outside quotes that starts a word)."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def _complete(text: str) -> bool:
    """The text is a whole shell command: no open quote, no trailing backslash or pipe."""
    if text.endswith(("\\", "|", "&&", "||")):
        return False
    try:
        shlex.split(text, comments=False)
    except ValueError:
        return False
    return True


def fenced_commands(text: str, name: str) -> Iterator[DocCommand]:
    """The commands of every shell-fenced block of a Markdown text."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        info = match["info"].strip().split()
        body_start = index + 1
        index += 1
        while index < len(lines) and not _FENCE.match(lines[index]):
            index += 1
        body = lines[body_start:index]
        index += 1
        if not info or info[0] not in SHELL_FENCES:
            continue
        pending: list[str] = []
        first = 0
        for offset, raw in enumerate(body):
            line = raw.strip()
            if not pending:
                line = _strip_comment(line)
                if not line:
                    continue
                first = body_start + offset + 1
            pending.append(line)
            joined = "\n".join(pending)
            if _complete(joined):
                command = _strip_comment(joined.replace("\\\n", " "))
                pending = []
                if command:
                    yield DocCommand(_squash(command), f"{name}:{first}", "fence")
        if pending:
            yield DocCommand(_squash("\n".join(pending)), f"{name}:{first}", "fence")


def _squash(command: str) -> str:
    """Whitespace runs outside quotes as one space (continuation lines are joined this way)."""
    out, quote = [], None
    for char in command:
        if quote:
            out.append(char)
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        if char.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(char)
    return "".join(out).strip()


#: Code spans in a table that are commands: they start with one of these words.
COMMAND_WORDS = ("calehr ", ".venv/bin/calehr ", "aws ", "npx ", "make ", "python", ".venv/bin/python ")


def _cells(row: str) -> list[str]:
    """A table row's cells (an escaped `\\|` stays inside its cell)."""
    return [cell.replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


#: The tables whose commands are run (what a person types when something happens): by document, the
#: headings of their sections. Other tables name commands in passing (flag check only).
RUN_TABLES = {"README.md": ("## Operations (runbook)",), "deploy.md": ("## Alarms",)}


def table_commands(text: str, name: str, *, all_tables: bool = False) -> Iterator[DocCommand]:
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            section = line.strip()
        if not line.lstrip().startswith("|"):
            continue
        if not all_tables and section not in RUN_TABLES.get(name, ()):
            continue
        for cell in _cells(line):
            for span in _CODE_SPAN.findall(cell):
                if span.startswith(COMMAND_WORDS):
                    yield DocCommand(_squash(span), f"{name}:{number}", "table")


def prose_calehr(text: str, name: str) -> Iterator[DocCommand]:
    """`calehr …` code spans anywhere (inline ones may wrap a line), for the flag check."""
    joined = re.sub(r"(?<=\S)\n(?=\S)", " ", text)  # a code span may wrap at a line end
    for match in _CODE_SPAN.finditer(joined):
        span = match[1]
        if span.startswith(("calehr ", ".venv/bin/calehr ")):
            number = joined[: match.start()].count("\n") + 1
            yield DocCommand(_squash(span), f"{name}:~{number}", "prose")


def commands(paths: Sequence[Path] | None = None) -> list[DocCommand]:
    """Every command of the fenced shell blocks and tables, in document order, without repeats."""
    found: dict[str, DocCommand] = {}
    for path in paths if paths is not None else documents():
        text = path.read_text(encoding="utf-8")
        for command in (*fenced_commands(text, path.name), *table_commands(text, path.name)):
            found.setdefault(command.text, command)
    return list(found.values())


def calehr_invocations(paths: Sequence[Path] | None = None) -> list[DocCommand]:
    """Every `calehr …` the docs name anywhere, each command of a pipeline or `&&` chain on its own."""
    found: dict[str, DocCommand] = {}
    for path in paths if paths is not None else documents():
        text = path.read_text(encoding="utf-8")
        for command in (
            *fenced_commands(text, path.name),
            *table_commands(text, path.name, all_tables=True),
            *prose_calehr(text, path.name),
        ):
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", command.text):
                words = part.split()
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # VAR=value before the command
                if words and words[0] in ("calehr", ".venv/bin/calehr"):
                    text_part = " ".join(words)
                    found.setdefault(text_part, DocCommand(text_part, command.where, command.source))
    return list(found.values())


#: Placeholders the docs use for values a person fills in; `fill` substitutes real ones.
PLACEHOLDER = re.compile(r"<[^>]+>|\bID\b|\bFILE\b|\bDIR\b|\bNAME\b|…|\.\.\.")


def calehr_words(command: str) -> list[str]:
    """The words of a `calehr …` command (shell-split; `$T` and variables left as they are)."""
    words = shlex.split(command, comments=True)
    if words and words[0] == ".venv/bin/calehr":
        words[0] = "calehr"
    return words


def flag_problems(words: list[str]) -> str | None:
    """What is wrong with a `calehr` command's words: a command or an option the CLI does not have."""
    import typer

    from cli.app import app

    command: Any = typer.main.get_command(app)
    root_options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    path = ["calehr"]
    rest = words[1:]
    while rest and hasattr(command, "commands") and not rest[0].startswith("-"):
        if rest[0].startswith("<") or rest[0] in ("…", "..."):
            return None  # `calehr <command> --stack NAME`: any command
        if rest[0] not in command.commands:
            return f"`{' '.join(path)}` has no command {rest[0]!r}"
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    options = root_options | {"--help", "-h"}
    options |= {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in rest:
        flag = word.split("=", 1)[0].strip("[]")
        if flag.startswith("--") and flag not in options:
            return f"`{' '.join(path)}` has no option {flag}"
    return None
