"""The web tier carries no ML stack: start-up, sign-in, reading and job pages never load torch,
MONAI, scikit-learn, captum, scipy, statsmodels or pandas. Statistics load with the first
results page, and only there.

The server is a real `synthbench serve`; what it loaded is read from outside, from the shared
libraries mapped into its process (/proc/PID/maps), so no import hook of ours is trusted.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from study_fixtures import build_read_study
from support import ROOT, make_user, start_server
from web_client import WebClient

from app.db import session_scope
from app.models import Study
from app.studies.service import assign_reader

HEAVY = ("torch", "monai", "sklearn", "captum", "scipy", "statsmodels", "pandas", "opacus")
# What /proc/PID/maps can show: packages whose import maps a compiled extension of their own.
# The others cannot load without one of these (monai, captum and opacus import torch;
# statsmodels imports scipy and pandas), so the four stand for all of HEAVY.
MAPPED = ("torch", "sklearn", "scipy", "pandas")
STATISTICS = ("scipy", "sklearn", "pandas")
PASSWORD = "lean-web-password-1"


def test_create_app_imports_no_ml_or_statistics_module() -> None:
    code = (
        "import json, sys\n"
        "from app.main import create_app\n"
        "create_app()\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def _loaded_packages(pid: int) -> set[str]:
    """Top-level site-packages folders with a file mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return set(re.findall(r"site-packages/([A-Za-z0-9_]+)/", maps))


def _heavy_in(pid: int) -> set[str]:
    return _loaded_packages(pid) & set(MAPPED)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_reader_sign_in_reading_and_job_pages_load_no_ml_stack(env) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()
    reader_id = make_user("lean-reader", PASSWORD, "reader")
    make_user("lean-admin", PASSWORD, "admin")
    with session_scope() as db:
        assign_reader(db, db.get(Study, built.study_id), reader_id)
    server = start_server(env)
    pid = server.process.proc.pid
    try:
        # The server process itself serves (one web worker, no embedded worker).
        assert _heavy_in(pid) == set()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            reader = WebClient(http)
            assert reader.login("lean-reader", PASSWORD).status_code == 303
            page = reader.get(f"/read/{built.study_id}")
            assert page.status_code == 200
            entry = re.search(r'name="entry" value="([^"]+)"', page.text)
            assert entry
            image = re.search(r'src="(/read/\d+/image/[^"]+)"', page.text)
            assert image and reader.get(image.group(1)).status_code == 200
            answer = reader.post_form(
                f"/read/{built.study_id}/answer",
                {
                    "entry": entry.group(1),
                    "answer": "real",
                    "confidence": "3",
                    "second_answer": "no",
                },
                token_from="/read",
                follow_redirects=False,
            )
            assert answer.status_code == 303, answer.text[-2000:]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            admin = WebClient(http)
            assert admin.login("lean-admin", PASSWORD).status_code == 303
            for path in ("/jobs", "/studies", f"/studies/{built.study_id}", "/datasets"):
                assert admin.get(path).status_code == 200, path
            assert _heavy_in(pid) == set()
            # The check can see a library when one is loaded: the results page needs them.
            assert admin.get(f"/studies/{built.study_id}/results").status_code == 200
            assert set(STATISTICS) & _heavy_in(pid)
            assert "torch" not in _heavy_in(pid)
    finally:
        server.process.stop()
