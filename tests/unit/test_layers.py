"""House rules of the Lambda layer (`shared/`), checked on the import graph (module-level imports only).

* every AWS SDK adapter lives in `shared/stores/` (the SigV4 signer for HealthLake is the one exception);
* the decision core (`shared/domain/`) imports neither EHR adapters, stores nor the orchestration;
* EHR adapters do not import stores (an id map is handed to the Oracle profile);
* no import cycle;
* no module in `shared/` grows past ~400 lines, and the Lambda handlers stay thin.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK_EXCEPTIONS = {"shared.ehr.auth.sigv4"}
MAX_SHARED_LINES = 425
MAX_HANDLER_LINES = 150


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("functions/**/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(path: Path) -> Iterator[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # annotations only
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}


def test_only_stores_import_the_aws_sdk() -> None:
    offenders = sorted(
        name
        for name, path in _modules().items()
        if name.startswith("shared.")
        and not name.startswith("shared.stores.")
        and name not in SDK_EXCEPTIONS
        and any(i.split(".")[0] in ("boto3", "botocore") for i in _imports(path))
    )
    assert offenders == []


def test_the_domain_and_the_ehr_adapters_keep_to_their_layers() -> None:
    graph = _graph()
    domain = sorted(
        (a, b)
        for a, targets in graph.items()
        if a.startswith("shared.domain.")
        for b in targets
        if b.startswith(("shared.ehr", "shared.stores", "shared.sync.service", "shared.reconcile", "shared.sync.drift"))
    )
    ehr = sorted(
        (a, b)
        for a, targets in graph.items()
        if a.startswith("shared.ehr.")
        for b in targets
        if b.startswith("shared.stores")
    )
    assert (domain, ehr) == ([], [])


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            assert visit(start, []) is None


def test_modules_stay_small_and_handlers_thin() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    large = {n: s for n, s in sizes.items() if n.startswith("shared.") and s > MAX_SHARED_LINES}
    fat = {n: s for n, s in sizes.items() if n.endswith(".handler") and s > MAX_HANDLER_LINES}
    assert (large, fat) == ({}, {})
