"""House rules of the code, checked on the import graph (`tools.layout`: every import, also inside a
function, except those under `if TYPE_CHECKING:`). They describe the design, not the file sizes:

* the Lambda layer (`shared/`) is sorted one way: FLOWS named like their function (sync, ingest, reconcile,
  availability, console, archive) order the side effects; PARTS (the pure domain, Cal.com, the clinic
  mapping, the EHR with its FHIR clients, auth and HL7 v2, every AWS store, the contracts) never import a
  flow, and no flow imports another flow; a handful of root modules (settings, errors, observability, the
  composition root, SnapStart) import only the contracts and each other;
* no import cycle between modules, and none between the rooms of the layer;
* every AWS SDK import is in `shared/stores/` (the SigV4 signer for HealthLake is the one exception);
* the pure core (`shared/domain/`) and what it imports do no I/O;
* the contracts import nothing but the standard library's dataclasses and typing, and the CDK app imports
  nothing else of the layer;
* each function's handler builds everything through its flow's composition root (`bootstrap`);
* the CLI and the local stack are never imported by the functions or the layer, and the local stack never
  imports the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

import pytest

from tools.layout import Module, external_imports, import_graph, modules

KNOWN = modules()
GRAPH = import_graph(KNOWN)

FLOWS = ("shared.sync", "shared.ingest", "shared.reconcile", "shared.availability", "shared.console", "shared.archive")
PARTS = (
    "shared.domain",
    "shared.calcom",
    "shared.clinic",
    "shared.ehr",
    "shared.stores",
    "shared.contracts",
)
ROOT_MODULES_MAX = 6
SDK = {"boto3", "botocore"}
SDK_EXCEPTIONS = {"shared.ehr.auth.sigv4"}
#: Libraries that reach outside the process (network, files, the environment, logs and metrics).
IO_LIBRARIES = {"boto3", "botocore", "httpx", "socket", "ssl", "urllib", "http", "subprocess", "os", "pathlib"}
IO_MODULES = ("shared.stores", "shared.ehr", "shared.observability", "shared.settings", "shared.clinic.source")
#: What the contracts may import: nothing that would pull a dependency into the CDK app.
CONTRACT_IMPORTS = {"__future__", "dataclasses", "typing"}
#: Which flow builds each function's objects (its `bootstrap` module).
FUNCTION_FLOWS = {
    "ingest": "shared.ingest",
    "sync": "shared.sync",
    "reconcile": "shared.reconcile",
    "availability": "shared.availability",
    "feed": "shared.availability",
    "console": "shared.console",
    "archive": "shared.archive",
}


def _in(name: str, prefixes: Iterable[str]) -> str | None:
    return next((p for p in prefixes if name == p or name.startswith(f"{p}.")), None)


def _edges(source: Iterable[str], target: Iterable[str]) -> list[tuple[str, str]]:
    sources, targets = tuple(source), tuple(target)
    return sorted((a, b) for a, imported in GRAPH.items() if _in(a, sources) for b in imported if _in(b, targets))


def _built_stores(module: Module) -> list[str]:
    """Names imported from `shared.stores` that the module calls (an error type it catches is no build)."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared.stores")
        for alias in node.names
    }
    return sorted(
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in imported
        and not node.func.id.endswith("Error")
    )


def test_every_package_of_the_layer_is_a_flow_a_part_or_a_root_module() -> None:
    packages = {
        ".".join(m.name.split(".")[:2]) for m in KNOWN.values() if m.name.startswith("shared.") and m.is_package
    }
    assert packages == set(FLOWS) | set(PARTS)


def test_parts_never_import_a_flow() -> None:
    assert _edges(PARTS, FLOWS) == []


def test_no_flow_imports_another_flow() -> None:
    crossing = [(a, b) for a, b in _edges(FLOWS, FLOWS) if _in(a, FLOWS) != _in(b, FLOWS)]
    assert crossing == []


def test_the_root_of_the_layer_holds_a_handful_of_modules_that_import_only_the_contracts_and_each_other() -> None:
    root = sorted(
        m.name for m in KNOWN.values() if m.name.count(".") == 1 and not m.is_package and m.name[:7] == "shared."
    )
    assert len(root) <= ROOT_MODULES_MAX, root
    allowed = (*root, "shared.contracts")
    assert [(a, b) for a in root for b in GRAPH[a] if not _in(b, allowed)] == []


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state:
            assert visit(start, []) is None


def test_the_rooms_of_the_layer_do_not_import_each_other_back() -> None:
    from tools.layout import layout

    cycles = [group for group in layout(depth=2).cycles() if any(room.startswith("shared") for room in group)]
    assert cycles == []


def test_only_stores_import_the_aws_sdk() -> None:
    offenders = sorted(
        m.name
        for m in KNOWN.values()
        if m.name.startswith("shared.")
        and not _in(m.name, ("shared.stores",))
        and m.name not in SDK_EXCEPTIONS
        and external_imports(m) & SDK
    )
    assert offenders == []


def test_the_pure_core_and_everything_it_imports_do_no_io() -> None:
    seen: set[str] = set()
    todo = [name for name in KNOWN if _in(name, ("shared.domain",))]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(GRAPH[name])
    assert sorted(name for name in seen if _in(name, IO_MODULES)) == []
    libraries = {lib: sorted(n for n in seen if lib in external_imports(KNOWN[n])) for lib in IO_LIBRARIES}
    assert {lib: names for lib, names in libraries.items() if names} == {}


def test_the_contracts_import_nothing_and_the_cdk_app_imports_only_them_of_the_layer() -> None:
    contracts = [m for m in KNOWN.values() if _in(m.name, ("shared.contracts",))]
    assert contracts
    assert {
        m.name: sorted(external_imports(m) - CONTRACT_IMPORTS)
        for m in contracts
        if external_imports(m) - CONTRACT_IMPORTS
    } == {}
    assert [(a, b) for a, b in _edges(("shared.contracts",), ("shared",)) if not _in(b, ("shared.contracts",))] == []
    assert [(a, b) for a, b in _edges(("infra",), ("shared",)) if not _in(b, ("shared.contracts",))] == []


@pytest.mark.parametrize("function", sorted(FUNCTION_FLOWS))
def test_each_handler_builds_its_objects_through_its_flows_composition_root(function: str) -> None:
    handler = f"functions.{function}.handler"
    bootstrap = f"{FUNCTION_FLOWS[function]}.bootstrap"
    assert bootstrap in KNOWN, f"{FUNCTION_FLOWS[function]} has no composition root"
    assert bootstrap in GRAPH[handler] and "shared.composition" in GRAPH[handler]
    assert _built_stores(KNOWN[handler]) == [], "a handler builds no store itself: its bootstrap does"
    assert "functools" not in external_imports(KNOWN[handler])  # no cache of its own


def test_the_cli_and_the_local_stack_stay_outside_the_functions_and_the_layer() -> None:
    assert _edges(("functions", "shared"), ("cli", "devstack", "infra", "bench", "tools")) == []
    assert _edges(("devstack",), ("cli",)) == []


def test_every_cli_command_module_registers_the_module_of_its_name() -> None:
    """`cli/commands/X.py` registers what `cli/X.py` (or `cli/X/`) implements, and every implementation
    module of the CLI has its command module (the rest is the CLI's own plumbing)."""
    plumbing = {"app", "errors", "output", "target", "roles", "identity", "__main__"}
    commands = {m.name.split(".")[-1] for m in KNOWN.values() if _in(m.name, ("cli.commands",)) and not m.is_package}
    implementations = (
        {m.name.split(".")[1] for m in KNOWN.values() if m.name.count(".") >= 1 and _in(m.name, ("cli",))}
        - {"commands"}
        - plumbing
    )
    assert commands == implementations
    for command in sorted(commands):
        command_module: Module = KNOWN[f"cli.commands.{command}"]
        assert _in(f"cli.{command}", GRAPH[command_module.name]) or any(
            _in(target, (f"cli.{command}",)) for target in GRAPH[command_module.name]
        ), f"cli/commands/{command}.py does not use cli/{command}"
