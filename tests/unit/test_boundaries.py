"""The architecture's two hard boundaries, checked on the source (see docs/architecture.md):
ml/ never imports web, database or worker code; domain rules never touch a database or a request."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_ml_has_no_web_database_or_worker_imports() -> None:
    banned = {"app", "workers", "fastapi", "starlette", "sqlalchemy", "celery", "kombu", "alembic"}
    offenders = {f: sorted(n & banned) for f, n in _imports(ROOT / "ml").items() if n & banned}
    assert offenders == {}


def test_domain_rules_are_pure() -> None:
    banned = {"fastapi", "starlette", "sqlalchemy", "celery", "kombu", "workers", "jinja2"}
    imports = _imports(ROOT / "app" / "domain")
    assert imports, "app/domain holds the pure rules"
    offenders = {f: sorted(n & banned) for f, n in imports.items() if n & banned}
    assert offenders == {}
