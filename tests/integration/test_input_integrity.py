"""Input that the probe of issue 15 found accepted, half-stored or answered with a 500: each is
now a clear refusal, and nothing is stored or changed. In-process app on SQLite (a 500 would
raise in the test client), the CLI in a real subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from evaluation_fixtures import import_cxr
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from support import Env, make_user, run_cli
from web_client import WebClient, csrf_from

from app.config import get_settings
from app.db import session_scope
from app.gans.options import gan_config
from app.gans.service import start_training
from app.main import create_app
from app.models import Dataset, ExternalRating, Job, LoginFailure, Study

# Row 3 opens a quote that never closes: csv read the rest of the file as its reason, so rows
# 2 and 3 were imported and rows 4 and 5 silently dropped.
UNTERMINATED = (
    "reader,image,truth,answer,reason\n"
    "r1,img1,real,real,clean\n"
    'r1,img2,fake,fake,"odd ribs\n'
    "r1,img3,real,fake,\n"
    "r2,img1,real,real,\n"
)
UNTERMINATED_MESSAGE = 'Line 3: a quoted value opens here and its closing quote (") is missing'


def count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def owner(sqlite_env: Env) -> int:
    return make_user("alice", "alice-password", "researcher")


@pytest.fixture
def web(owner: int) -> Iterator[WebClient]:
    with TestClient(create_app(), base_url="http://testserver") as client:
        browser = WebClient(client)
        assert browser.login("alice", "alice-password").status_code == 303
        yield browser


def _post(web: WebClient, url: str, data: dict[str, str], page: str) -> httpx.Response:
    token = csrf_from(web.get(page).text)
    return web.client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def test_ratings_with_an_unterminated_quote_are_refused_whole_by_the_cli(sqlite_env: Env) -> None:
    make_user("root", "root-password", "admin")
    path = sqlite_env.home / "ratings.csv"
    path.write_text(UNTERMINATED)
    result = run_cli(sqlite_env, "study", "import-ratings", str(path), "--name", "Quotes")
    assert result.returncode != 0, result.stdout
    assert "Nothing was imported" in result.stderr + result.stdout
    assert UNTERMINATED_MESSAGE in result.stderr + result.stdout
    assert (count(Study), count(ExternalRating)) == (0, 0)


def test_ratings_with_an_unterminated_quote_are_refused_whole_by_the_web(web: WebClient) -> None:
    token = csrf_from(web.get("/studies/import").text)
    response = web.client.post(
        "/studies/import",
        data={"csrf_token": token, "name": "Quotes"},
        files={"file": ("ratings.csv", UNTERMINATED.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert UNTERMINATED_MESSAGE.replace('"', "&#34;") in response.text
    assert (count(Study), count(ExternalRating)) == (0, 0)


@pytest.fixture
def training(owner: int, sqlite_env: Env) -> tuple[int, int]:
    """A dataset at 32 px and a (queued) training job on it, as the launch path makes them."""
    dataset_id = import_cxr(sqlite_env, owner)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        config = gan_config({}, preset="tiny-cpu", resolutions=(32,))
        job = start_training(db, owner_id=owner, dataset=dataset, config=config, queue="cpu")
        db.commit()
        return dataset_id, job.id


def _clone(web: WebClient, job_id: int, params: str) -> httpx.Response:
    data = {"type": "train_gan", "queue": "cpu", "params": params}
    return _post(web, f"/jobs/{job_id}/clone", data, f"/jobs/{job_id}/clone")


def _params(job_id: int) -> dict[str, Any]:
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        return {k: v for k, v in job.params.items() if k != "cloned_from"}


def test_deeply_nested_clone_params_are_a_422(web: WebClient, training: tuple[int, int]) -> None:
    _, job_id = training
    jobs = count(Job)
    # Under the 64 KB cap, past the JSON decoder's recursion limit: a RecursionError, a 500.
    decoder_overflow = _clone(web, job_id, "[" * 60_000)
    assert decoder_overflow.status_code == 422
    assert "nested more than 32 levels deep" in decoder_overflow.text
    # Decodable, yet deep enough to overflow the recursive checks after the decoder.
    deep = json.dumps({**_params(job_id), "note": json.loads('{"a":' * 900 + "1" + "}" * 900)})
    assert _clone(web, job_id, deep).status_code == 422
    assert count(Job) == jobs


def test_a_clone_runs_the_launch_forms_validation(
    web: WebClient, training: tuple[int, int]
) -> None:
    dataset_id, job_id = training
    jobs = count(Job)
    original = _params(job_id)

    def edited(**config: object) -> str:
        return json.dumps({**original, "config": {**original["config"], **config}})

    # Values the launch form refuses, none of them a path the clone's own rule would catch.
    refused = {
        "fid_features: FID features: inception, or none.": edited(fid_features="resnet50"),
        "domain_classifier: No file classifier.pt.": edited(
            domain_classifier="classifier.pt", domain_lambda=1.0
        ),
        "resolution: The dataset is stored at 32 px, not 64.": edited(resolution=64),
        "batch_size: Choose a value between 1 and 4096.": edited(batch_size=0),
        "kimg needs a value.": edited(kimg=None),
        "Unknown option &#39;learning_rate&#39;.": edited(learning_rate=0.1),
    }
    for message, params in refused.items():
        response = _clone(web, job_id, params)
        assert response.status_code == 422, message
        assert message in response.text, message
    assert count(Job) == jobs
    # The launch form itself refuses the same values with the same words.
    form = {"dataset": str(dataset_id), "preset": "tiny-cpu", "queue": "cpu"}
    launch = _post(web, "/gans", {**form, "fid_features": "resnet50"}, "/gans/new")
    assert launch.status_code == 422 and "FID features: inception, or none." in launch.text
    assert count(Job) == jobs

    # A value both accept queues the clone, stored as the launch stores it (typed values).
    accepted = _clone(web, job_id, edited(kimg="2.5", mirror="false", fid_features="none"))
    assert accepted.status_code == 303, accepted.text[-500:]
    new_id = int(accepted.headers["location"].rsplit("/", 1)[1])
    config = _params(new_id)["config"]
    assert (config["kimg"], config["mirror"], config["fid_features"]) == (2.5, False, None)
    assert {k: v for k, v in config.items() if k not in ("kimg", "mirror")} == {
        k: v for k, v in original["config"].items() if k not in ("kimg", "mirror")
    }


def test_a_nul_byte_in_an_artefact_path_is_a_404(web: WebClient, training: tuple[int, int]) -> None:
    _, job_id = training
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None and job.artefact_dir
        folder = job.artefact_dir
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "log.txt").write_text("step 1\n")
    assert web.get(f"/jobs/{job_id}/files/log.txt").text == "step 1\n"
    for path in ("log.txt%00.png", "%00", "sub/%00/x"):
        response = web.get(f"/jobs/{job_id}/files/{path}")
        assert response.status_code == 404, path
        assert "has no file" in response.text


def _failed_sign_in(client: TestClient, forwarded_for: str) -> None:
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": "alice", "password": "wrong", "csrf_token": token},
        headers={"x-forwarded-for": forwarded_for},
        follow_redirects=False,
    )
    assert response.status_code == 401, response.text[-300:]


def _failure_addresses() -> list[str]:
    with session_scope() as db:
        return list(db.scalars(select(LoginFailure.address).order_by(LoginFailure.id)))


def test_x_forwarded_for_counts_only_behind_a_configured_proxy(
    sqlite_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice", "alice-password", "researcher")
    local = ("127.0.0.1", 40000)
    # No proxy configured: a local client picking a fresh address per attempt used to dodge
    # the per-address limit; now every attempt counts against the socket peer.
    with TestClient(create_app(), client=local) as client:
        _failed_sign_in(client, "198.51.100.1")
        _failed_sign_in(client, "198.51.100.2")
    assert _failure_addresses() == ["127.0.0.1", "127.0.0.1"]

    monkeypatch.setenv("SYNTHBENCH_TRUSTED_PROXIES", '["127.0.0.0/8"]')
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), client=local) as client:
            _failed_sign_in(client, "203.0.113.7")
            # A client's own header comes first; the trusted proxy appends what it saw last.
            _failed_sign_in(client, "10.9.9.9, 203.0.113.8")
        with TestClient(create_app(), client=("192.0.2.50", 40000)) as client:
            _failed_sign_in(client, "203.0.113.9")  # not from the proxy: the header is ignored
    finally:
        monkeypatch.delenv("SYNTHBENCH_TRUSTED_PROXIES")
        get_settings.cache_clear()
    assert _failure_addresses()[2:] == ["203.0.113.7", "203.0.113.8", "192.0.2.50"]


def test_flash_cookie_is_secure_with_secure_cookies(
    sqlite_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice", "alice-password", "researcher")
    monkeypatch.setenv("SYNTHBENCH_SECURE_COOKIES", "true")
    get_settings.cache_clear()
    try:
        with TestClient(create_app(), base_url="https://testserver") as client:
            web = WebClient(client)
            assert web.login("alice", "alice-password").status_code == 303
            out = _post(web, "/logout", {}, "/jobs")
            assert out.status_code == 303
            cookies = out.headers.get_list("set-cookie")
            flash = next(c for c in cookies if c.startswith("sb_flash="))
            assert "; secure" in flash.lower(), flash
            shown = client.get("/login")
            assert "You are signed out." in shown.text
            cleared = next(c for c in shown.headers.get_list("set-cookie") if "sb_flash=" in c)
            assert "; secure" in cleared.lower(), cleared
    finally:
        monkeypatch.delenv("SYNTHBENCH_SECURE_COOKIES")
        get_settings.cache_clear()


def test_no_swagger_page_that_the_csp_blocks_and_the_schema_stays(web: WebClient) -> None:
    assert web.get("/api/docs").status_code == 404
    schema = web.get("/openapi.json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "synthbench"
    assert "cdn.jsdelivr.net" not in web.get("/jobs").text


def test_sweep_form_shows_no_dict_method(web: WebClient) -> None:
    page = web.get("/sweeps")
    assert page.status_code == 200
    assert "built-in method" not in page.text
    assert 'name="values" value=""' in page.text
    refused = _post(web, "/sweeps", {"name": "s", "kind": "gan_param", "values": "1, 2"}, "/sweeps")
    assert refused.status_code == 422
    assert "built-in method" not in refused.text
    assert 'name="values" value="1, 2"' in refused.text
