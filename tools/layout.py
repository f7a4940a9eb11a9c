"""The import graph of the project as rooms and arrows: `python -m tools.layout` (or `make layout`).

A *room* is a package folder (`shared/sync`, `shared/domain`, `functions/ingest`, `infra/constructs`, …),
cut at `--depth` path parts (default 2: `shared/ehr/fhir` counts as `shared/ehr`); a loose module belongs
to the folder it sits in (`shared/settings.py` is in the room `shared`). An *arrow* is one room importing
another; its count is how many (module, imported module) pairs make it. Every `import` counts, also one
inside a function, except those under `if TYPE_CHECKING:` (annotations only).

The same graph is what tests/unit/test_layers.py checks the house rules on, so what this prints and what
the rules judge can never differ.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The project's code: the Lambda layer, the handlers, the CDK app, the CLI, the local stack, the benchmarks.
PACKAGES = ("shared", "functions", "infra", "cli", "devstack", "bench", "tools")


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # dotted, e.g. `shared.sync.service.service`
    path: Path
    is_package: bool  # an `__init__.py`

    @property
    def folder(self) -> tuple[str, ...]:
        """The package folder the module sits in (a package's own `__init__` sits in its folder)."""
        parts = tuple(self.name.split("."))
        return parts if self.is_package else parts[:-1]

    def lines(self) -> int:
        return len(self.path.read_text(encoding="utf-8").splitlines())


def modules(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, Module]:
    """Every Python module of `packages` under `root`, by dotted name."""
    found: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if "node_modules" in relative.parts or "results" in relative.parts:
                continue
            parts = relative.with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found[name] = Module(name, path, is_package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under `if TYPE_CHECKING:` (imports for annotations only)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(inner) for inner in ast.walk(child))
    return skipped


def _import_statements(module: Module) -> Iterator[tuple[str, list[str]]]:
    """(module named, [the dotted names imported from it]) per import statement outside `TYPE_CHECKING`."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                yield base, [f"{base}.{alias.name}" for alias in node.names]


def imported_names(module: Module) -> Iterator[str]:
    """Every dotted name an import statement of `module` may refer to (a module, or a name in one)."""
    for base, names in _import_statements(module):
        yield base
        yield from names


def _resolve(name: str, known: dict[str, Module]) -> str | None:
    """The module `name` is, or is in: its longest known prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(known: dict[str, Module] | None = None) -> dict[str, set[str]]:
    """Module → the project modules it imports (itself and its own package excluded)."""
    known = modules() if known is None else known
    graph: dict[str, set[str]] = {}
    for name, module in known.items():
        targets: set[str | None] = set()
        for base, names in _import_statements(module):
            submodules = [n for n in names if n in known]  # `from package import module`: the module
            targets |= set(submodules) if submodules else {_resolve(base, known)}
        graph[name] = {t for t in targets if t is not None and t != name and not name.startswith(f"{t}.")}
    return graph


def external_imports(module: Module) -> set[str]:
    """The top-level names of the third-party (or standard library) packages `module` imports."""
    own = set(PACKAGES)
    return {name.split(".")[0] for name in imported_names(module)} - own


def room_of(module: Module, depth: int = 2) -> str:
    return "/".join(module.folder[:depth])


@dataclass(frozen=True, slots=True)
class Layout:
    rooms: dict[str, tuple[int, int]]  # room → (modules, lines)
    arrows: Counter[tuple[str, str]]  # (importer room, imported room) → module edges

    def cycles(self) -> list[list[str]]:
        """Groups of rooms that import each other, directly or around a loop (strongly connected)."""
        edges: dict[str, set[str]] = {room: set() for room in self.rooms}
        for source, target in self.arrows:
            edges[source].add(target)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        groups: list[list[str]] = []

        def visit(room: str) -> None:
            index[room] = low[room] = len(index)
            stack.append(room)
            for nxt in sorted(edges[room]):
                if nxt not in index:
                    visit(nxt)
                    low[room] = min(low[room], low[nxt])
                elif nxt in stack:
                    low[room] = min(low[room], index[nxt])
            if low[room] == index[room]:
                group = []
                while True:
                    member = stack.pop()
                    group.append(member)
                    if member == room:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

        for room in sorted(edges):
            if room not in index:
                visit(room)
        return sorted(groups)


def layout(depth: int = 2, known: dict[str, Module] | None = None) -> Layout:
    known = modules() if known is None else known
    graph = import_graph(known)
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for module in known.values():
        room = room_of(module, depth)
        counts[room] += 1
        sizes[room] += module.lines()
    arrows: Counter[tuple[str, str]] = Counter()
    for name, targets in graph.items():
        source = room_of(known[name], depth)
        for target in targets:
            target_room = room_of(known[target], depth)
            if target_room != source:
                arrows[(source, target_room)] += 1
    return Layout(rooms={room: (counts[room], sizes[room]) for room in sorted(counts)}, arrows=arrows)


def render(result: Layout) -> str:
    width = max(len(room) for room in result.rooms)
    lines = [f"Rooms ({len(result.rooms)}): package folder, modules, lines"]
    lines += [f"  {room:<{width}}  {n:>3} modules  {size:>6} lines" for room, (n, size) in result.rooms.items()]
    lines.append(f"Arrows ({len(result.arrows)}, {sum(result.arrows.values())} module imports): importer -> imported")
    for source in result.rooms:
        targets = sorted((t, n) for (s, t), n in result.arrows.items() if s == source)
        if targets:
            lines.append(f"  {source:<{width}} -> " + ", ".join(f"{target} ({n})" for target, n in targets))
    cycles = result.cycles()
    lines.append(f"Room cycles ({len(cycles)})" + (":" if cycles else ": none"))
    lines += [f"  {' <-> '.join(group)}" for group in cycles]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=2, help="path parts that name a room (default 2)")
    parser.add_argument("--json", action="store_true", help="rooms and arrows as JSON")
    args = parser.parse_args(argv)
    result = layout(depth=args.depth)
    if args.json:
        document = {
            "rooms": {room: {"modules": n, "lines": size} for room, (n, size) in result.rooms.items()},
            "arrows": [{"from": s, "to": t, "imports": n} for (s, t), n in sorted(result.arrows.items())],
            "cycles": result.cycles(),
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
