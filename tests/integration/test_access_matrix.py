"""Who may do what, for every route of the app: an access matrix generated from the route table.

Six principals (anonymous, a reader invited to study A, a reader invited to study B, researcher
R1 who owns study A and everything the URLs point at, researcher R2, an administrator) against
every (method, path) the app serves. A route added without a rule in RULES fails
`test_every_route_has_a_rule`, and so does a rule for a route that is gone.

Requests carry a valid CSRF token and an empty body: the answer under test is the
authorisation answer, which must come before form validation (someone else's object is 404,
never 422). State-changing routes are then sent again without a token and must change nothing.
One SQLite installation per module; nothing of ours is mocked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from access_world import PASSWORD, R1_MARK, R2_MARK, SWEEP_FORM, World, build_world
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount
from support import Env, activate

from app.auth.tokens import csrf_token_for, token_hash
from app.config import get_settings
from app.db import Base, session_scope
from app.deps import SESSION_COOKIE
from app.main import create_app
from app.models import Dataset, ImageSet, Invite, Job, Study, Sweep
from app.web.security import CSRF_COOKIE, CSRF_HEADER, SAFE_METHODS

PRINCIPALS = ("anonymous", "reader_a", "reader_b", "r1", "r2", "admin")
LOGIN = "login"  # 303 to /login?next=<path> (401 for a JSON client)
Expect = int | str


@dataclass(frozen=True)
class Rule:
    """The status each principal gets, in PRINCIPALS order, and how to fill the URL."""

    expect: tuple[Expect, ...]
    job: str = "job"  # which of R1's jobs fills {job_id}: job, train, sample or neighbours
    query: str = ""  # formatted with the same values as the path

    def __post_init__(self) -> None:
        assert len(self.expect) == len(PRINCIPALS), self.expect


def public(status: int = 200, **kw: str) -> Rule:
    return Rule((status,) * len(PRINCIPALS), **kw)


def researchers(own: int = 200, other: int | None = None, **kw: str) -> Rule:
    """Researcher pages: readers are refused whatever the object; the administrator gets what
    the owner gets."""
    return Rule((LOGIN, 403, 403, own, own if other is None else other, own), **kw)


def owned(own: int = 200, **kw: str) -> Rule:
    """A page of one of R1's objects: R2 hears the same 404 as for an id that does not exist."""
    return researchers(own, 404, **kw)


def reading(own: int = 200, refused: int = 403) -> Rule:
    """A page of study A for its readers only: not for the other study's reader, not for its
    owner or an administrator either (they are not readers of it)."""
    return Rule((LOGIN, own, refused, refused, refused, refused))


def admins(own: int = 200) -> Rule:
    """Administrator pages: everyone else is refused, researchers and readers alike."""
    return Rule((LOGIN, 403, 403, 403, 403, own))


RULES: dict[tuple[str, str], Rule] = {
    # FastAPI's schema stays public (the default); hiding it changes this rule. There is no
    # Swagger UI page: the CSP blocks its CDN script (tests/integration/test_input_integrity.py).
    ("GET", "/openapi.json"): public(),
    ("GET", "/static/{file:path}"): public(),
    ("GET", "/healthz"): public(),
    ("GET", "/glossary"): public(),
    ("GET", "/"): public(303),  # to /login, /read or /jobs by who is asking
    ("GET", "/login"): Rule((200, 303, 303, 303, 303, 303)),
    ("POST", "/login"): public(422),  # the empty form: no credentials to check
    ("POST", "/logout"): public(303),
    ("GET", "/invite/{token}"): public(),
    ("POST", "/invite/{token}"): public(303),  # the single-use token is the credential
    # Jobs.
    ("GET", "/jobs"): researchers(),
    ("POST", "/jobs"): researchers(422),
    ("GET", "/jobs/{job_id}"): owned(),
    ("GET", "/jobs/{job_id}/files/{path:path}"): owned(job="train"),
    ("POST", "/jobs/{job_id}/cancel"): owned(303),
    ("POST", "/jobs/{job_id}/retry"): owned(303),
    ("GET", "/jobs/{job_id}/clone"): owned(),
    ("POST", "/jobs/{job_id}/clone"): owned(422),
    ("POST", "/jobs/{job_id}/study"): owned(303, job="sample"),
    # Datasets.
    ("GET", "/datasets"): researchers(),
    ("POST", "/datasets"): researchers(422),
    ("GET", "/datasets/{dataset_id}"): owned(),
    ("GET", "/datasets/{dataset_id}/images/{row}.png"): owned(),
    ("GET", "/datasets/{dataset_id}/report.txt"): owned(),
    ("POST", "/datasets/{dataset_id}/subsets"): owned(422),
    ("GET", "/datasets/{dataset_id}/benchmark"): owned(),
    # GANs and their evaluation. R2 asking for an estimate on R1's dataset gets a 200 fragment
    # that only says to choose one of their own datasets (htmx swaps successful answers only).
    ("GET", "/gans/new"): researchers(query="dataset={dataset_id}"),
    ("GET", "/gans/estimate"): researchers(query="dataset={dataset_id}&preset=tiny-cpu"),
    ("POST", "/gans"): researchers(422),
    ("GET", "/gans/{job_id}/grid"): owned(job="train", query="snapshot=1"),
    ("POST", "/gans/{job_id}/sample"): owned(303, job="train"),
    ("GET", "/gans/translate"): researchers(),
    ("POST", "/gans/translate"): researchers(422),
    ("GET", "/gans/{job_id}/benchmark"): owned(job="train"),
    ("POST", "/gans/{job_id}/benchmark/run"): owned(303, job="train"),
    ("POST", "/gans/{job_id}/benchmark/{kind}"): owned(303, job="train"),
    ("GET", "/gans/compare"): owned(query="ids={train}"),
    ("GET", "/gans/import"): researchers(),
    ("POST", "/gans/import"): researchers(422),  # no file, no manifest
    # R1's plain job is no imported generator: 404 for whoever may reach the route at all
    # (the owner's 200 is in tests/integration/test_byo_generator_jobs.py).
    ("GET", "/gans/generators/{job_id}"): owned(404),
    # The privacy job is still queued: its owner is sent to the job page.
    ("GET", "/evaluation/neighbours/{job_id}"): owned(303, job="neighbours"),
    # Sweeps.
    ("GET", "/sweeps"): researchers(),
    ("POST", "/sweeps"): researchers(422),
    ("GET", "/sweeps/{sweep_id}"): owned(),
    # Image sets.
    ("GET", "/imagesets"): researchers(),
    ("POST", "/imagesets"): researchers(422),
    ("GET", "/imagesets/{image_set_id}"): owned(),
    ("GET", "/imagesets/{image_set_id}/images/{image_id}"): owned(),
    # Studies.
    ("GET", "/studies"): researchers(),
    ("GET", "/studies/new"): researchers(),
    ("POST", "/studies"): researchers(422),
    ("GET", "/studies/import"): researchers(),
    ("POST", "/studies/import"): researchers(422),
    ("GET", "/studies/{study_id}"): owned(),
    ("POST", "/studies/{study_id}/readers"): owned(422),  # no user_id, but only once allowed
    ("POST", "/studies/{study_id}/invites"): owned(),
    # Sharing: only the owner (or an admin) changes who the study is shared with.
    ("POST", "/studies/{study_id}/shares"): owned(303),
    ("POST", "/studies/{study_id}/shares/{user_id}/remove"): owned(303),
    # The reason to open a study despite its blinding audit: the owner's decision alone.
    ("POST", "/studies/{study_id}/blinding-override"): owned(303),
    ("GET", "/studies/{study_id}/results"): owned(),
    ("GET", "/studies/{study_id}/results/reasons"): owned(),
    ("GET", "/studies/{study_id}/export.csv"): owned(),
    ("GET", "/studies/{study_id}/export-imrmc.csv"): owned(),
    ("GET", "/studies/{study_id}/export.imrmc"): owned(),
    ("GET", "/studies/{study_id}/stats.json"): owned(),
    # Reading. The list shows each user only the studies they read (none for researchers).
    ("GET", "/read"): Rule((LOGIN, 200, 200, 200, 200, 200)),
    ("GET", "/read/{study_id}"): reading(),
    # One answer for every refusal, so an image URL never confirms that the id exists.
    ("GET", "/read/{study_id}/image/{opaque_id}"): reading(refused=404),
    # Reader A is let in and then told the (empty) entry is not theirs.
    ("POST", "/read/{study_id}/answer"): reading(404),
    ("GET", "/read/{study_id}/answer"): public(303),  # only a redirect to the reading page
    ("GET", "/read/{study_id}/done"): reading(303),  # not done yet: back to the reading page
    # Administration. The empty form names no change (422): the matrix must not disable or
    # demote R2, whose sessions later tests use. Revoking needs no field: each request gets
    # a fresh invitation of its own to revoke.
    ("GET", "/admin/users"): admins(),
    ("POST", "/admin/users"): admins(422),
    ("POST", "/admin/users/{user_id}/active"): admins(422),
    ("POST", "/admin/users/{user_id}/role"): admins(422),
    ("POST", "/admin/users/{user_id}/password"): admins(422),
    ("GET", "/admin/invitations"): admins(),
    ("POST", "/admin/invitations"): admins(422),
    ("POST", "/admin/invitations/{invite_id}/revoke"): admins(303),
}


# ------------------------------------------------------------------ the route table


def served_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app answers; a mount counts as GET of its files.
    HEAD is left out: Starlette adds it to every GET and it answers like the GET."""
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            found.append(("GET", f"{route.path}/{{file:path}}"))
            continue
        assert route.path is not None
        found.extend(
            (method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"
        )
    return found


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Training R1's GAN is the slow part: one installation for the whole module.
    monkeypatch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("access")
    env = Env(home, f"sqlite:///{home / 'synthbench.sqlite'}", f"sqla+sqlite:///{home / 'b.db'}")
    activate(env, monkeypatch)
    yield build_world(env)
    from app.db import get_engine

    get_engine().dispose()
    monkeypatch.undo()


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    # A 500 is an answer to report in the matrix, not an exception that stops it.
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


# ------------------------------------------------------------------ requests


def url_for(world: World, path: str, rule: Rule) -> str:
    jobs = {
        "job": world.r1.job,
        "train": world.r1.train_job,
        "sample": world.sample_job,
        "neighbours": world.neighbours_job,
    }
    values = {
        "job_id": jobs[rule.job],
        "train": world.r1.train_job,
        "dataset_id": world.r1.dataset,
        "study_id": world.r1.study,
        "sweep_id": world.r1.sweep,
        "image_set_id": world.r1.image_set,
        "image_id": world.r1.image,
        "user_id": world.r2.user_id,
        "row": 0,
        "path": world.artefact,
        "file": "favicon.svg",
        "kind": "classifier",
        "opaque_id": world.opaque_id,
    }
    if "{token}" in path:
        # Accepting an invitation uses it up: every request gets its own.
        values["token"] = world.fresh_invite_token()
    if "{invite_id}" in path:
        values["invite_id"] = _invite_id(world.fresh_invite_token())
    filled = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values[m.group(1)]), path)
    return f"{filled}?{rule.query.format(**values)}" if rule.query else filled


def _invite_id(token: str) -> int:
    with session_scope() as db:
        invite_id = db.scalar(select(Invite.id).where(Invite.token_hash == token_hash(token)))
    assert invite_id is not None
    return invite_id


def send(
    client: TestClient,
    world: World,
    who: str,
    method: str,
    url: str,
    *,
    token: str | None = "valid",
    accept_json: bool = False,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    """One request as `who`, from a clean cookie jar: a fresh session and CSRF nonce each time.
    `token`: "valid" (made for this nonce), None (none sent) or a literal token to send."""
    client.cookies.clear()
    nonce = secrets.token_urlsafe(24)
    client.cookies.set(CSRF_COOKIE, nonce)
    session = world.session_cookie(who)
    if session is not None:
        client.cookies.set(SESSION_COOKIE, session)
    headers = {"Accept": "application/json"} if accept_json else {}
    if method not in SAFE_METHODS and token is not None:
        secret = get_settings().resolved_secret_key()
        headers[CSRF_HEADER] = csrf_token_for(secret, nonce) if token == "valid" else token
    return client.request(method, url, headers=headers, data=data, follow_redirects=False)


def mismatch(expect: Expect, response: httpx.Response) -> str | None:
    """Why `response` is not `expect`, or None when it is."""
    location = response.headers.get("location", "")
    to_login = location.startswith("/login?next=")
    if expect == LOGIN:
        ok = response.status_code == 303 and to_login
        return None if ok else f"wanted a redirect to /login, got {_describe(response)}"
    if response.status_code != expect:
        return f"wanted {expect}, got {_describe(response)}"
    if to_login:
        return f"wanted {expect}, got a redirect to log in ({location})"
    return None


def _describe(response: httpx.Response) -> str:
    if response.is_redirect:
        return f"{response.status_code} to {response.headers.get('location')}"
    message = re.search(r'<p class="error[^"]*">(.*?)</p>', response.text, re.S)
    detail = message.group(1).strip() if message else response.text[:120]
    return f"{response.status_code} ({detail!r})"


# ------------------------------------------------------------------ the matrix


def test_every_route_has_a_rule(client: TestClient) -> None:
    # The client's app, not a new one: create_app reads settings, which only the module's
    # installation may point anywhere.
    app = client.app
    assert isinstance(app, FastAPI)
    served = served_routes(app)
    duplicates = {r for r in served if served.count(r) > 1}
    missing = [f"{m} {p}" for m, p in served if (m, p) not in RULES]
    stale = [f"{m} {p}" for m, p in RULES if (m, p) not in served]
    assert not duplicates, f"routes registered twice: {sorted(duplicates)}"
    assert not missing, f"routes without an access rule in RULES: {missing}"
    assert not stale, f"rules for routes the app no longer serves: {stale}"


@pytest.mark.parametrize("who", PRINCIPALS)
def test_access_matrix(client: TestClient, world: World, who: str) -> None:
    column = PRINCIPALS.index(who)
    failures = []
    for (method, path), rule in RULES.items():
        url = url_for(world, path, rule)
        response = send(client, world, who, method, url)
        problem = mismatch(rule.expect[column], response)
        if problem:
            failures.append(f"{method} {path} ({url}): {problem}")
    assert not failures, f"{who}:\n" + "\n".join(failures)


def test_json_clients_get_401_instead_of_the_login_redirect(
    client: TestClient, world: World
) -> None:
    failures = []
    for (method, path), rule in RULES.items():
        if rule.expect[0] != LOGIN:
            continue
        url = url_for(world, path, rule)
        response = send(client, world, "anonymous", method, url, accept_json=True)
        if response.status_code != 401:
            failures.append(f"{method} {path}: {_describe(response)}")
    assert not failures, "\n".join(failures)


def test_estimate_for_someone_elses_dataset_says_nothing_about_it(
    client: TestClient, world: World
) -> None:
    """The one rule where a stranger gets 200: the fragment must be a bare refusal."""
    url = f"/gans/estimate?dataset={world.r1.dataset}&preset=tiny-cpu"
    own = send(client, world, "r1", "GET", url).text
    other = send(client, world, "r2", "GET", url).text
    assert "Memory" in own and "parameters" in own
    assert "Choose one of your ready datasets." in other
    assert "Memory" not in other and "parameters" not in other


# ------------------------------------------------------------------ CSRF


def csrf_body(world: World, method: str, path: str) -> dict[str, str]:
    """A body that would do something with a valid token, so "nothing changed" means
    something; other routes get a generic one (the fingerprint covers them all the same)."""
    bodies = {
        ("POST", "/login"): {"username": "r1", "password": PASSWORD},
        ("POST", "/jobs"): {"collection": "paediatric-cxr", "queue": "cpu"},
        ("POST", "/jobs/{job_id}/study"): {"name": "csrf probe"},
        ("POST", "/gans/{job_id}/sample"): {"name": "csrf probe", "per_class": "2"},
        ("POST", "/sweeps"): {**SWEEP_FORM, "name": "csrf probe", "dataset": str(world.r1.dataset)},
        ("POST", "/studies/{study_id}/invites"): {"label": "csrf probe"},
        ("POST", "/studies/{study_id}/shares"): {"username": "r2"},
        ("POST", "/studies/{study_id}/readers"): {"user_id": str(world.r2.user_id)},
        ("POST", "/read/{study_id}/answer"): {"entry": world.opaque_id, "answer": "real"},
    }
    return bodies.get((method, path), {"name": "csrf probe"})


def _state_changing() -> list[tuple[str, str]]:
    return [(m, p) for m, p in RULES if m not in SAFE_METHODS]


def _allowed_principal(rule: Rule) -> str:
    """Someone the route lets in, so that only the missing token can be why it refuses."""
    refused = rule.expect[PRINCIPALS.index("r1")] in {LOGIN, 403, 404}
    return "reader_a" if refused else "r1"


def database_fingerprint() -> str:
    """A digest of every row of every table: equal before and after means nothing changed.
    Sessions are left out: each request of these tests starts one on purpose."""
    digest = hashlib.sha256()
    with session_scope() as db:
        for table in Base.metadata.sorted_tables:
            if table.name == "web_sessions":
                continue
            rows = db.execute(select(table).order_by(*table.primary_key.columns)).all()
            digest.update(f"{table.name}:{rows!r}".encode())
    return digest.hexdigest()


@pytest.mark.parametrize("token", ["missing", "foreign"])
def test_state_changes_need_the_csrf_token(client: TestClient, world: World, token: str) -> None:
    # "foreign": well formed and signed by the server, but made for another browser's nonce.
    foreign = csrf_token_for(get_settings().resolved_secret_key(), "another-browsers-nonce")
    failures = []
    for method, path in _state_changing():
        rule = RULES[(method, path)]
        who = _allowed_principal(rule)
        url = url_for(world, path, rule)
        before = database_fingerprint()
        response = send(
            client,
            world,
            who,
            method,
            url,
            token=foreign if token == "foreign" else None,
            data=csrf_body(world, method, path),
        )
        if response.status_code != 403 or "security token" not in response.text:
            failures.append(f"{method} {path} as {who}: {_describe(response)}")
        elif database_fingerprint() != before:
            failures.append(f"{method} {path} as {who}: refused, but the database changed")
    assert not failures, "\n".join(failures)


def test_logout_without_token_keeps_the_session(client: TestClient, world: World) -> None:
    """The one state change the fingerprint leaves out (sessions)."""
    session = world.session_cookie("r1")
    assert session is not None
    client.cookies.clear()
    client.cookies.set(CSRF_COOKIE, secrets.token_urlsafe(24))
    client.cookies.set(SESSION_COOKIE, session)
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/jobs", follow_redirects=False).status_code == 200


# ------------------------------------------------------------------ lists

LIST_PAGES = (
    "/jobs",
    "/datasets",
    "/studies",
    "/studies/new",
    "/imagesets",
    "/sweeps",
    "/gans/new",
    "/gans/translate",
    "/gans/compare",
)
LINK = re.compile(r'href="/(jobs|datasets|studies|imagesets|sweeps)/(\d+)[/"]')
GAN_CHOICE = re.compile(r'name="ids" value="(\d+)"')  # the compare page's ticked boxes
MODELS = {"jobs": Job, "datasets": Dataset, "studies": Study, "imagesets": ImageSet}


def _owners(page: str) -> dict[str, int | None]:
    """Owner of every object the page links to (or offers to compare), keyed by its URL."""
    found = LINK.findall(page) + [("jobs", raw_id) for raw_id in GAN_CHOICE.findall(page)]
    owners: dict[str, int | None] = {}
    with session_scope() as db:
        for kind, raw_id in found:
            row = db.get(MODELS.get(kind, Sweep), int(raw_id))
            owners[f"/{kind}/{raw_id}"] = None if row is None else row.owner_id
    return owners


@dataclass
class Seen:
    text: str = ""
    owners: dict[str, int | None] = field(default_factory=dict)


def _browse(client: TestClient, world: World, who: str) -> dict[str, Seen]:
    seen = {}
    for page in LIST_PAGES:
        response = send(client, world, who, "GET", page)
        assert response.status_code == 200, (who, page, _describe(response))
        seen[page] = Seen(response.text, _owners(response.text))
    return seen


@pytest.mark.parametrize("who", ["r1", "r2"])
def test_researchers_list_only_their_own_objects(
    client: TestClient, world: World, who: str
) -> None:
    me, other = (world.r1, world.r2) if who == "r1" else (world.r2, world.r1)
    mark, other_mark = (R1_MARK, R2_MARK) if who == "r1" else (R2_MARK, R1_MARK)
    seen = _browse(client, world, who)
    for page, found in seen.items():
        strangers = {url: owner for url, owner in found.owners.items() if owner != me.user_id}
        assert not strangers, f"{who} sees others' objects on {page}: {strangers}"
        assert other_mark not in found.text, f"{who} sees {other_mark}'s names on {page}"
    # The pages do list one's own things, so the checks above are not vacuous.
    assert f'/jobs/{me.job}"' in seen["/jobs"].text
    assert f"/datasets/{me.dataset}" in seen["/datasets"].text
    assert f"/studies/{me.study}" in seen["/studies"].text
    assert f"/sweeps/{me.sweep}" in seen["/sweeps"].text
    assert f"/imagesets/{me.image_set}" in seen["/imagesets"].text
    for page in ("/gans/new", "/gans/translate", "/studies/new"):
        assert mark in seen[page].text, f"{who}'s own objects are missing from {page}"
    assert f'name="ids" value="{me.train_job}"' in seen["/gans/compare"].text
    assert f"/jobs/{other.job}" not in seen["/jobs"].text


def test_administrator_lists_everyones_objects(client: TestClient, world: World) -> None:
    seen = _browse(client, world, "admin")
    for r in (world.r1, world.r2):
        assert f'/jobs/{r.job}"' in seen["/jobs"].text
        assert f"/datasets/{r.dataset}" in seen["/datasets"].text
        assert f"/studies/{r.study}" in seen["/studies"].text
        assert f"/sweeps/{r.sweep}" in seen["/sweeps"].text
        assert f"/imagesets/{r.image_set}" in seen["/imagesets"].text
        assert f'name="ids" value="{r.train_job}"' in seen["/gans/compare"].text
    for page in ("/gans/new", "/gans/translate", "/studies/new"):
        assert R1_MARK in seen[page].text and R2_MARK in seen[page].text, page


@pytest.mark.parametrize("who", ["reader_a", "reader_b"])
def test_readers_list_only_the_study_they_were_invited_to(
    client: TestClient, world: World, who: str
) -> None:
    mine, other = (world.r1, world.r2) if who == "reader_a" else (world.r2, world.r1)
    page = send(client, world, who, "GET", "/read").text
    assert f"/read/{mine.study}" in page
    assert f"/read/{other.study}" not in page
