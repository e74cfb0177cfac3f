"""Schemathesis against the app's own OpenAPI schema: no request, however malformed, gets a 500.

Every generated case is sent twice, once anonymous and once as a signed-in researcher (session
cookie plus a valid CSRF header, so state-changing routes get past the CSRF check and reach
their own validation). The installation is seeded with one object of each kind, and half the
generated integer path parameters are replaced by the seeded ids, so real pages are reached as
well as not-found paths. The regressions at the end are the 500s this found, one per fix.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from dataset_fixtures import write_folder
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from support import Env, activate

from app.auth.service import create_user, start_session
from app.auth.tokens import csrf_token_for, sign
from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import get_engine, session_scope
from app.deps import SESSION_COOKIE
from app.domain.reader_study import StudyDesign
from app.evaluation import options as evaluation_options
from app.imagesets.ingest import IngestLimits, MiB
from app.imagesets.service import create_image_set
from app.jobs.specs import SpecError
from app.main import create_app
from app.models import Role, User
from app.studies.design import ReadingOptions
from app.studies.imports import import_ratings
from app.studies.ratings import natural_key
from app.studies.service import assign_reader, create_study
from app.sweeps.grid import DatasetFacts, parse_spec
from app.web.security import CSRF_COOKIE, CSRF_HEADER
from ml.data.collections import available_collections
from workers.runner import execute

CXR = available_collections()["paediatric-cxr"].files
SEEDED_IDS = (1, 2, 3)  # every kind of object in _seed has ids 1 (and some 2 and 3)
NONCE = "fuzz-nonce-0123456789abcdef"  # the CSRF cookie; the header carries its signed token
# Every route serves HTML to browsers; JSON errors keep failure reports short.
ACCEPT = {"accept": "text/html,application/json"}
RATINGS = "reader,image,truth,answer,confidence\n" + "".join(
    f"r{r},i{i},{'real' if i % 2 else 'fake'},real,3\n" for r in (1, 2) for i in range(6)
)


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def _seed(env: Env) -> int:
    """One object of each kind, owned by a researcher who also reads the study; returns the
    researcher's id. No password: nothing here signs in through the login form."""
    with session_scope() as db:
        alice = create_user(db, username="alice", password=None, role=Role.researcher)
        alice_id = alice.id
    images = {f"{i}.jpeg": CXR[i].read_bytes() for i in range(8)}
    rows = "".join(f"{i}.jpeg,{'real' if i % 2 else 'synthetic'},normal,\n" for i in range(8))
    images["manifest.csv"] = f"file,source,label,group\n{rows}".encode()
    with session_scope() as db:
        image_set = create_image_set(
            db,
            owner_id=alice_id,
            name="Seed set",
            default_origin=None,
            upload_path_or_file=_zip(images),
            limits=IngestLimits(max_upload_bytes=64 * MiB),
        )
        study = create_study(
            db,
            owner=alice,
            name="Seed study",
            instructions="Real or synthetic?",
            image_set_ids=[image_set.id],
            design=StudyDesign(n_images=4, synthetic_share=0.5, seed=1),
            reading=ReadingOptions(),
        )
        assign_reader(db, study, alice_id)
    with session_scope() as db:
        import_ratings(db, owner_id=alice_id, name="Imported", csv_text=RATINGS)
    with session_scope() as db:
        source = write_folder(env.home / "imports" / "cxr").root
        options = parse_import_options("folder", resolutions="32")
        _, job = start_import(db, owner_id=alice_id, name="CXR", source=source, options=options)
        db.commit()
        job_id = job.id
    execute(job_id)
    return alice_id


@pytest.fixture
def api_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'synthbench.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    activate(env, monkeypatch)
    researcher = _seed(env)
    app = create_app()
    app.state.fuzz_researcher = researcher
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.hook(flatmap_path_parameters)
    yield schema
    # from_asgi starts the app's lifespan (the job reaper) and keeps it for the process.
    shutdown_lifespans()
    get_engine().dispose()


def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Half the time, integer path parameters become ids the seed made: hypothesis alone
    reached only not-found paths (GET /jobs/{job_id} never met job 1)."""
    ints = [k for k, v in (path_parameters or {}).items() if type(v) is int]
    if not ints:
        return st.just(path_parameters)
    seeded = st.fixed_dictionaries({k: st.sampled_from(SEEDED_IDS) for k in ints})
    original = path_parameters or {}
    return st.one_of(st.just(path_parameters), seeded.map(lambda d: {**original, **d}))


schema = schemathesis.pytest.from_fixture("api_schema")


def _researcher_auth(app: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Cookies and headers of a fresh researcher session: a fresh one per case, since a
    generated POST /logout ends whichever session it is sent with."""
    with session_scope() as db:
        user = db.get(User, app.state.fuzz_researcher)
        token, _ = start_session(db, user, hours=1)
    secret = app.state.secret_key
    cookies = {SESSION_COOKIE: sign(secret, "session", token), CSRF_COOKIE: NONCE}
    return cookies, {CSRF_HEADER: csrf_token_for(secret, NONCE)}


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    anonymous = case.call(headers=ACCEPT, allow_redirects=False)
    case.validate_response(anonymous, checks=[not_a_server_error])
    cookies, headers = _researcher_auth(case.operation.app)
    signed_in = case.call(headers={**ACCEPT, **headers}, cookies=cookies, allow_redirects=False)
    case.validate_response(signed_in, checks=[not_a_server_error])


# --- regressions: the 500s the fuzzing (and a look at the same pattern elsewhere) found -----


@pytest.fixture
def researcher(sqlite_env: Env) -> Iterator[TestClient]:
    with session_scope() as db:
        alice = create_user(db, username="alice", password=None, role=Role.researcher)
        token, _ = start_session(db, alice, hours=1)
    app = create_app()
    with TestClient(app, base_url="http://testserver") as client:
        client.cookies.set(SESSION_COOKIE, sign(app.state.secret_key, "session", token))
        client.cookies.set(CSRF_COOKIE, NONCE)
        client.headers[CSRF_HEADER] = csrf_token_for(app.state.secret_key, NONCE)
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/jobs/9223372036854775808/clone"),  # OverflowError binding the id in SQLite
        ("POST", "/datasets/9223372036854775808/subsets"),
        ("POST", "/read/9223372036854775808/answer"),
        ("GET", "/jobs/-9223372036854775809"),
        ("GET", "/studies/99999999999999999999999/results"),
        ("GET", "/gans/compare?ids=9223372036854775808"),
    ],
)
def test_ids_past_64_bits_are_not_found(researcher: TestClient, method: str, path: str) -> None:
    response = researcher.request(method, path, follow_redirects=False)
    assert response.status_code == 404, response.text[-300:]


def test_page_numbers_are_bounded(researcher: TestClient) -> None:
    # The offset (page - 1) * 120 overflowed SQLite's integer for huge pages.
    assert researcher.get("/imagesets/1?page=9223372036854775807").status_code == 422


def test_dataset_dashboard_of_a_missing_dataset_is_404(researcher: TestClient) -> None:
    assert researcher.get("/datasets/0/benchmark").status_code == 404


def test_superscript_digits_are_not_ids(researcher: TestClient) -> None:
    # "²".isdigit() is True but int("²") raises: ?ids=² was a 500.
    assert researcher.get("/gans/compare?ids=²").status_code == 200
    with pytest.raises(SpecError, match="image set ids"):
        evaluation_options.test_sets({"test_set_ids": "3,²"})
    sweep = {"name": "s", "kind": "grid", "resolutions": "32", "classes": "2", "per_class": "5"}
    sweep |= {"gan_preset": "tiny-cpu", "draw": "6", "classifier_preset": "tiny-cpu"}
    with pytest.raises(SpecError, match="Epochs"):
        parse_spec({**sweep, "epochs": "²"}, DatasetFacts(resolutions=(32,), n_classes=2))
    assert natural_key("R1²") == ["R", 1, "²"]
