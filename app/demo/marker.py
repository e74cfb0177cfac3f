"""Whether this installation runs the demo, and as whom: a small file in SYNTHBENCH_HOME.

`synthbench demo` writes it; the jobs' success hook reads it to continue the demo's pipeline.
An installation that never ran the demo has no file, so the hook costs it one stat().
"""

from __future__ import annotations

import json
from pathlib import Path

from app.config import get_settings

MARKER = "demo.json"


def _path() -> Path:
    return get_settings().home / MARKER


def write_marker(researcher_id: int) -> None:
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"researcher_id": researcher_id}))
    tmp.replace(path)


def read_marker() -> int | None:
    try:
        value = json.loads(_path().read_text()).get("researcher_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
