"""How commands print: tables (rich) for people, `--json` for scripts, progress bars on stderr.

Every command builds its result as plain data first and hands it to `Output`; with `--json` only that
data is printed (one JSON document on stdout), so scripts never parse tables. Messages for people
(warnings, progress, hints) go to stderr in both modes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts instead of tables.")]
#: Piped to a file, grep or a test, a row stays one line however many columns it has (a table takes its
#: natural width; it is not padded out to this).
_PIPE_WIDTH = 4096


class ProgressTicker(Protocol):
    def advance(self, steps: int = 1) -> None: ...

    def total(self, total: int | None) -> None: ...


class Output:
    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        # Created per command, so they write to whatever sys.stdout/sys.stderr are at that moment.
        self.console = _console(sys.stdout)
        self.errors = _console(sys.stderr)

    # -- results -----------------------------------------------------------------------------------
    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def result(self, data: Any, *, text: str | None = None) -> None:
        """`data` as JSON with --json, else `text` (default: nothing)."""
        if self.as_json:
            self.json(data)
        elif text is not None:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def table(
        self,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[str],
        *,
        data: Any = None,
        title: str | None = None,
        empty: str = "(none)",
    ) -> None:
        """A table of `rows` (only `columns`); with --json, `data` (default: the rows) instead."""
        if self.as_json:
            self.json(list(rows) if data is None else data)
            return
        if title:
            self.console.print(title, markup=False, highlight=False, soft_wrap=True)
        if not rows:
            self.console.print(empty, markup=False, highlight=False)
            return
        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True, overflow="fold")
        for row in rows:
            table.add_row(*(str(row.get(c, "") if row.get(c) is not None else "") for c in columns))
        self.console.print(table)

    def say(self, text: str) -> None:
        """A line for people: stdout normally, stderr with --json (stdout holds only the JSON)."""
        target = self.errors if self.as_json else self.console
        target.print(text, markup=False, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        """A warning or hint, always on stderr."""
        self.errors.print(text, markup=False, highlight=False, soft_wrap=True)

    # -- progress ----------------------------------------------------------------------------------
    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[ProgressTicker]:
        """A progress bar on stderr (only on a terminal; silent under --json or when piped)."""
        show = not self.as_json and self.errors.is_terminal
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.errors, disable=not show, transient=False) as progress:
            task = progress.add_task(description, total=total)

            class _Ticker:
                def advance(self, steps: int = 1) -> None:
                    progress.advance(task, steps)

                def total(self, total: int | None) -> None:
                    progress.update(task, total=total)

            yield _Ticker()


def _console(stream: Any) -> Console:
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=_PIPE_WIDTH, color_system=None)
    return console
