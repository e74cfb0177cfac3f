"""Route handlers are thin: they parse the request, call a service and render. No module that
defines routes builds or runs a query itself (issue 16), so every query has one home in a
service, where its access rule is applied and tested."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SESSION_CALLS = {"get", "scalar", "scalars", "execute", "query"}


def _queries(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "select":
            found.append(f"line {node.lineno}: select(...)")
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in SESSION_CALLS
            and isinstance(func.value, ast.Name)
            and func.value.id == "db"
        ):
            found.append(f"line {node.lineno}: db.{func.attr}(...)")
    return found


def test_no_route_module_queries_the_database() -> None:
    routes = [p for p in (ROOT / "app").rglob("*.py") if "APIRouter(" in p.read_text()]
    assert len(routes) >= 10  # the walk found the route modules
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in routes
        if (found := _queries(path.read_text()))
    }
    assert offenders == {}


def test_the_check_sees_a_query() -> None:
    source = "def page(db):\n    db.get(Job, 1)\n    return db.scalars(select(Job))\n"
    assert _queries(source) == [
        "line 2: db.get(...)",
        "line 3: db.scalars(...)",
        "line 3: select(...)",
    ]
