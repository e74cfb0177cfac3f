"""No import cycle between packages: the layout README's "Layout, one package at a time" describes
is a hierarchy (features on top of jobs, auth, web and domain; the CLI and workers on top of
features), so a package can be read, tested and changed without the ones above it.

Every import counts, those inside functions too (an import moved into a function to dodge a
cycle still ties the packages together). Packages are `app.<name>` (a module directly in `app/`
counts as its own package), `workers` and `ml`.
"""

from __future__ import annotations

from pathlib import Path

from test_import_boundaries import ROOT, _imported_modules


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("workers", "ml"):
        return parts[0]
    if parts[0] == "app" and len(parts) > 1:
        return f"app.{parts[1]}"
    return None


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for folder in ("app", "workers", "ml"):
        for path in (root / folder).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            source = _package(".".join(parts if parts[-1] != "__init__" else parts[:-1]))
            if source is None:
                continue
            for module in _imported_modules(path, root):
                target = _package(module)
                if target is not None and target != source:
                    graph.setdefault(source, set()).add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert {"app.jobs", "app.gans", "workers", "app.cli"} <= set(graph)  # the walk saw them
    assert cycles(graph) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "app" / "jobs").mkdir(parents=True)
    (tmp_path / "app" / "gans").mkdir(parents=True)
    (tmp_path / "workers").mkdir()
    (tmp_path / "ml").mkdir()
    (tmp_path / "app" / "jobs" / "service.py").write_text("from app.gans import service\n")
    (tmp_path / "app" / "gans" / "service.py").write_text(
        "def later():\n    from app.jobs.service import x\n"
    )
    (tmp_path / "workers" / "tasks.py").write_text("import app.jobs.service\n")
    graph = package_graph(tmp_path)
    assert cycles(graph) == [["app.gans", "app.jobs"]]
