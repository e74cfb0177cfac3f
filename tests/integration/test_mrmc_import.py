"""``synthbench study import-ratings FILE.imrmc`` in real subprocesses, then the MRMC section of
``study stats --json`` and of the results page, against the Iowa OR-DBM MRMC output for the
Van Dyke data (tests/unit/test_mrmc.py has the full comparison)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from support import Env, make_user, run_cli
from web_client import WebClient

from app.db import session_scope
from app.main import create_app
from app.models import User
from app.studies.imports import import_imrmc

DATA = Path(__file__).parent.parent / "data" / "VanDyke.imrmc"


def _env(tmp_path: Path) -> Env:
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'cli.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    assert run_cli(env, "db", "upgrade").returncode == 0
    created = run_cli(env, "user", "create", "root", "--role", "admin", "--password", "root-pw-123")
    assert created.returncode == 0, created.stderr
    return env


def test_import_imrmc_then_mrmc_in_stats_json(tmp_path: Path) -> None:
    env = _env(tmp_path)
    file = tmp_path / "VanDyke.imrmc"
    shutil.copy(DATA, file)
    imported = run_cli(env, "study", "import-ratings", str(file), "--name", "Van Dyke 1993")
    assert imported.returncode == 0, imported.stderr
    study_id = imported.stdout.strip()
    assert study_id.isdigit()

    shown = run_cli(env, "study", "stats", study_id, "--json")
    assert shown.returncode == 0, shown.stderr
    mrmc = json.loads(shown.stdout)["mrmc"]
    assert mrmc["available"] and mrmc["design"] == "modalities" and mrmc["fully_crossed"]
    assert mrmc["treatments"] == ["0", "1"] and mrmc["n_cases"] == 114
    assert abs(mrmc["treatment_means"]["0"] - 0.89703704) < 1e-8
    test = mrmc["random_readers_random_cases"]["test"]
    # Iowa OR-DBM MRMC 2.51 / MRMCaov: F 4.456319, ddf_H 15.25967, p 0.05166569.
    assert abs(test["statistic"] - 4.456319) < 1e-6 and abs(test["df2"] - 15.25967) < 1e-5
    assert abs(test["p"] - 0.05166569) < 1e-8
    assert abs(mrmc["or_components"]["cov2"] - 0.00034407) < 1e-8
    assert abs(mrmc["dbm_components"]["var_c"] - 0.02724923) < 1e-8
    assert [p["readers"] for p in mrmc["sample_size"]["plans"]] == [3, 5, 10, 20]


def test_results_page_shows_the_mrmc_section(env) -> None:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    with session_scope() as db:
        owner = db.scalar(select(User.id).where(User.username == "alice"))
        study_id = import_imrmc(db, owner_id=owner, name="Van Dyke", text=DATA.read_text()).id
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        web.login("alice", "alice-password")
        page = web.get(f"/studies/{study_id}/results").text
        stats = web.get(f"/studies/{study_id}/stats.json").json()
    assert "MRMC (Obuchowski-Rockette, Hillis ddf)" in page
    assert 'data-mrmc-design="modalities"' in page and 'data-fully-crossed="true"' in page
    assert "Modalities as treatments (2), fully crossed" in page
    p_attr = re.search(r'data-mrmc-p="([^"]+)"', page)
    assert p_attr and abs(float(p_attr.group(1)) - 0.05166569) < 1e-8
    assert stats["mrmc"]["random_readers_random_cases"]["test"]["p"] == float(p_attr.group(1))
    ci = stats["mrmc"]["random_readers_random_cases"]["differences"][0]
    assert abs(ci["ci_low"] - -0.0879594986) < 1e-10 and abs(ci["ci_high"] - 0.0003588544) < 1e-10


def test_bad_imrmc_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    bad = tmp_path / "bad.imrmc"
    bad.write_text("study\nBEGIN DATA:\n-1,1,0,0\n-1,2,0,1\n1,1,A,0.2\n1,2,A,x\n")
    result = run_cli(env, "study", "import-ratings", str(bad), "--name", "Bad")
    assert result.returncode == 1 and result.stdout == ""
    assert "Line 6: score 'x' is not a finite number" in result.stderr
    # Nothing was imported: the next good import gets the first study id.
    shutil.copy(DATA, tmp_path / "good.imrmc")
    good = run_cli(env, "study", "import-ratings", str(tmp_path / "good.imrmc"), "--name", "Ok")
    assert good.returncode == 0 and good.stdout.strip() == "1"
