"""Which package may import which, read from the source (every import, also those inside
functions: an import moved into a function still ties the two packages together).

- `ml/` is the science: no web, database, queue or application code.
- `app/domain/` holds the pure rules: no models, database or web.
- `app/jobs/` runs jobs of every type and knows none by name: it imports no feature package;
  features declare their job types and `app/job_catalog.py` gathers them (app.jobs.registry).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("gans", "datasets", "evaluation", "sweeps", "imagesets", "studies", "reading", "demo")


def _imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute dotted names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from app import gans` imports the package app.gans.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _offenders(folder: str, banned: tuple[str, ...]) -> dict[str, list[str]]:
    def is_banned(module: str) -> bool:
        return any(module == b or module.startswith(f"{b}.") for b in banned)

    offenders: dict[str, list[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = sorted(m for m in _imported_modules(path) if is_banned(m))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    return offenders


def test_ml_imports_no_application_web_database_or_queue_code() -> None:
    banned = ("app", "workers", "fastapi", "starlette", "sqlalchemy", "celery", "alembic")
    assert _offenders("ml", banned) == {}


def test_domain_imports_no_models_database_or_web() -> None:
    banned = ("app.models", "app.db", "fastapi", "starlette", "sqlalchemy", "celery", "workers")
    assert _offenders("app/domain", banned) == {}


def test_jobs_package_imports_no_feature_package() -> None:
    banned = (*(f"app.{feature}" for feature in FEATURES), "app.job_catalog")
    assert _offenders("app/jobs", banned) == {}


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    # The checks above would miss `from ..gans import service` if this resolution were wrong.
    probe = tmp_path / "app" / "jobs" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ..gans import service\nfrom . import specs\nimport app.db\n")
    found = _imported_modules(probe, tmp_path)
    assert {"app.gans", "app.gans.service", "app.jobs", "app.jobs.specs", "app.db"} <= found
