"""The job page's tools: retry, clone-and-edit, the log tail and the artefact list, through the
in-process app on SQLite; jobs run with the real runner in this process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from support import Env, make_user
from web_client import WebClient, csrf_from

from app.db import session_scope
from app.jobs import service
from app.jobs.image_stats import image_stats_spec
from app.jobs.specs import JobSpec
from app.main import create_app
from app.models import Job, JobStatus
from workers.runner import execute


@pytest.fixture
def owner(sqlite_env: Env) -> int:
    return make_user("olga", "olga-password-1", "researcher")


@pytest.fixture
def web(owner: int) -> Iterator[WebClient]:
    with _signed_in("olga", "olga-password-1") as client:
        yield client


@contextmanager
def _signed_in(username: str, password: str) -> Iterator[WebClient]:
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        assert web.login(username, password).status_code == 303
        yield web


def _create(owner_id: int | None, spec: JobSpec) -> int:
    with session_scope() as db:
        return service.create_job(db, spec, owner_id=owner_id).id


def _job(job_id: int) -> Job:
    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        db.expunge(job)
        return job


def _failed_job(owner_id: int) -> int:
    # An unknown collection passes no spec builder, so the runner fails it at once.
    job_id = _create(owner_id, JobSpec("image_stats", "cpu", {"collection": "no-such-images"}))
    execute(job_id)
    assert _job(job_id).status is JobStatus.failed
    return job_id


def _post(web: WebClient, url: str, data: dict[str, str], page: str) -> httpx.Response:
    token = csrf_from(web.get(page).text)
    return web.client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)


def _new_id(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def test_retry_of_a_failed_job_reruns_the_same_recipe(web: WebClient, owner: int) -> None:
    old = _failed_job(owner)
    new = _new_id(_post(web, f"/jobs/{old}/retry", {}, f"/jobs/{old}"))
    assert new != old
    retried = _job(new)
    assert retried.status is JobStatus.queued  # committed; the broker holds its message
    assert (retried.type, retried.queue, retried.owner_id) == ("image_stats", "cpu", owner)
    assert {k: v for k, v in retried.params.items() if k != "retry_of"} == _job(old).params
    execute(new)
    assert _job(new).status is JobStatus.failed
    assert _job(new).error.split("\n")[0] == _job(old).error.split("\n")[0]
    page = web.get(f"/jobs/{new}")
    assert f'<a href="/jobs/{old}">job {old}</a>' in page.text
    assert f"a retry of {old}" in page.text  # the flash


def test_retry_of_a_cancelled_job_succeeds_and_a_succeeded_one_is_refused(
    web: WebClient, owner: int
) -> None:
    cancelled = _create(owner, image_stats_spec("paediatric-cxr"))
    with session_scope() as db:
        service.request_cancel(db, db.get(Job, cancelled))
    new = _new_id(_post(web, f"/jobs/{cancelled}/retry", {}, f"/jobs/{cancelled}"))
    execute(new)
    assert _job(new).status is JobStatus.succeeded
    assert f'action="/jobs/{new}/retry"' not in web.get(f"/jobs/{new}").text
    refused = _post(web, f"/jobs/{new}/retry", {}, f"/jobs/{new}")
    assert refused.status_code == 303
    assert refused.headers["location"] == f"/jobs/{new}"
    assert "Only failed or cancelled jobs can be retried" in web.get(f"/jobs/{new}").text
    with session_scope() as db:
        assert service.list_jobs(db, owner_id=owner)[0].id == new  # no job was added


def test_clone_form_shows_the_params_and_starts_an_edited_job(web: WebClient, owner: int) -> None:
    old = _create(owner, image_stats_spec("paediatric-cxr"))
    form = web.get(f"/jobs/{old}/clone")
    assert form.status_code == 200
    assert "&#34;collection&#34;: &#34;paediatric-cxr&#34;" in form.text
    params = json.dumps({"collection": "pydicom-samples"})
    data = {"type": "image_stats", "queue": "gpu", "params": params}
    new = _new_id(_post(web, f"/jobs/{old}/clone", data, f"/jobs/{old}/clone"))
    cloned = _job(new)
    assert cloned.params == {"collection": "pydicom-samples", "cloned_from": old}
    assert (cloned.queue, cloned.owner_id) == ("gpu", owner)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ('{"collection": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"collection": "x", "pad": "a" * 70_000}), "over 64 KB"),
        (json.dumps({"collection": "x", "dataset_path": "/etc"}), "&#39;dataset_path&#39; cannot"),
        (json.dumps({"collection": "x", "config": {"fid": "/etc/x"}}), "&#39;config.fid&#39;"),
    ],
)
def test_clone_refuses_bad_input_inline(
    web: WebClient, owner: int, params: str, message: str
) -> None:
    old = _create(owner, image_stats_spec("paediatric-cxr"))
    data = {"type": "image_stats", "queue": "cpu", "params": params}
    response = _post(web, f"/jobs/{old}/clone", data, f"/jobs/{old}/clone")
    assert response.status_code == 422
    assert message in response.text
    assert 'id="params-error"' in response.text


def test_clone_keeps_paths_type_and_queue_in_bounds(web: WebClient, owner: int) -> None:
    spec = JobSpec(
        "train_gan",
        "gpu",
        {"dataset_id": 1, "dataset_path": "/data/1", "dataset_hash": "h", "config": {"kimg": 1}},
    )
    old = _create(owner, spec)
    page = f"/jobs/{old}/clone"
    edited = {**spec.params, "dataset_path": "/home/someone/else"}
    changed_path = {"type": "train_gan", "queue": "gpu", "params": json.dumps(edited)}
    refused = _post(web, page, changed_path, page)
    assert refused.status_code == 422
    assert "&#39;dataset_path&#39; cannot be changed" in refused.text
    other_type = {**changed_path, "type": "sample", "params": json.dumps(spec.params)}
    assert "keeps the job" in _post(web, page, other_type, page).text
    bad_queue = {**changed_path, "queue": "tpu", "params": json.dumps(spec.params)}
    assert _post(web, page, bad_queue, page).status_code == 422
    # A free value passes this rule, then the launch form's own checks (app/jobs/clone_checks.py),
    # which refuse this made-up job: its dataset does not exist. A clone that passes both is in
    # tests/integration/test_input_integrity.py.
    longer = {**spec.params, "config": {"kimg": 2}}
    free = {"type": "train_gan", "queue": "cpu", "params": json.dumps(longer)}
    checked = _post(web, page, free, page)
    assert checked.status_code == 422
    assert "resolution: The dataset is stored at none px, not 32." in checked.text


def test_other_researchers_get_404_and_csrf_is_enforced(web: WebClient, owner: int) -> None:
    old = _failed_job(owner)
    make_user("mona", "mona-password-1", "researcher")
    with _signed_in("mona", "mona-password-1") as other:
        assert other.get(f"/jobs/{old}/clone").status_code == 404
        assert _post(other, f"/jobs/{old}/retry", {}, "/jobs").status_code == 404
        data = {"type": "image_stats", "queue": "cpu", "params": "{}"}
        assert _post(other, f"/jobs/{old}/clone", data, "/jobs").status_code == 404
    no_token = web.client.post(f"/jobs/{old}/retry", follow_redirects=False)
    assert no_token.status_code == 403
    data = {"type": "image_stats", "queue": "cpu", "params": '{"collection": "x"}'}
    assert web.client.post(f"/jobs/{old}/clone", data=data).status_code == 403
    with session_scope() as db:
        assert len(service.list_jobs(db, owner_id=None)) == 1


def test_page_lists_artefacts_and_the_link_downloads(web: WebClient, owner: int) -> None:
    job_id = _create(owner, image_stats_spec("paediatric-cxr"))
    execute(job_id)
    page = web.get(f"/jobs/{job_id}").text
    link = f"/jobs/{job_id}/files/image_stats.json"
    assert f'<a href="{link}">image_stats.json</a>' in page
    download = web.get(link)
    assert download.status_code == 200
    assert json.loads(download.text)["n_images"] == 16


def test_log_tail_shows_the_last_metrics_lines(web: WebClient, owner: int) -> None:
    job_id = _create(owner, image_stats_spec("paediatric-cxr"))
    folder = Path(_job(job_id).artefact_dir)
    folder.mkdir(parents=True)
    lines = [json.dumps({"tick": i, "loss_d": 0.5}) for i in range(100)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    fragment = web.get(f"/jobs/{job_id}", headers={"HX-Request": "true"}).text
    assert "every 1s" in fragment  # queued: the block (and its log) keeps polling
    tail = re.search(r'<pre class="log-tail">(.*?)</pre>', fragment, re.S)
    assert tail is not None
    shown = tail.group(1).splitlines()
    assert len(shown) == 40
    assert "&#34;tick&#34;: 99" in shown[-1] and "&#34;tick&#34;: 60" in shown[0]


def test_admin_may_retry_a_researchers_job_which_stays_theirs(owner: int) -> None:
    old = _failed_job(owner)
    make_user("ada", "ada-password-1", "admin")
    with _signed_in("ada", "ada-password-1") as admin:
        new = _new_id(_post(admin, f"/jobs/{old}/retry", {}, f"/jobs/{old}"))
    assert _job(new).owner_id == owner


def test_job_list_pages_newest_first_and_polls_its_own_page(web: WebClient, owner: int) -> None:
    with session_scope() as db:
        ids = [
            service.create_job(db, image_stats_spec("paediatric-cxr"), owner_id=owner).id
            for _ in range(service.PAGE_SIZE + 5)
        ]
    first = web.get("/jobs").text
    assert f'<a href="/jobs/{ids[-1]}">' in first and f'<a href="/jobs/{ids[0]}">' not in first
    second = web.get("/jobs?page=2", headers={"HX-Request": "true"}).text
    assert second.count("data-job-status=") == 5
    assert f'<a href="/jobs/{ids[0]}">' in second
    assert 'hx-get="/jobs?page=2"' in second and "Page 2 of 2" in second
    assert "Page 2 of 2" in web.get("/jobs?page=99").text  # past the end: the last page


def test_an_evaluation_clone_passes_its_launch_request_checks(web: WebClient, owner: int) -> None:
    """Evaluation clones go through the typed request the launch form parses into
    (`app.evaluation.requests`): a setting the form refuses is refused, an allowed edit is
    stored as the launch stores it."""
    from app.evaluation.options import classifier_config
    from app.models import Dataset, DatasetStatus

    with session_scope() as db:
        info = {"resolutions": [32], "label_names": ["a", "b"]}
        dataset = Dataset(
            name="clone data", owner_id=owner, status=DatasetStatus.ready, info=info,
            content_hash="c0ffee", format="folder",
        )  # fmt: skip
        db.add(dataset)
        db.flush()
        dataset_id = dataset.id
    base = {"dataset_id": dataset_id, "dataset_path": "/data/x", "dataset_hash": "c0ffee"}
    config = classifier_config({"preset": "tiny-cpu"}, [32])
    params = {**base, "train_on": "real", "preset": "tiny-cpu", "config": config}
    old = _create(owner, JobSpec("train_classifier", "cpu", params))
    page = f"/jobs/{old}/clone"

    def clone(edited: dict) -> httpx.Response:
        data = {"type": "train_classifier", "queue": "cpu", "params": json.dumps(edited)}
        return _post(web, page, data, page)

    refused = clone({**params, "config": {**config, "epochs": 0}})
    assert refused.status_code == 422
    assert "epochs: Epochs: a whole number from 1 to 1000." in refused.text
    wrong_size = clone({**params, "config": {**config, "resolution": 64}})
    assert "The dataset is stored at 32 px, not 64." in wrong_size.text
    new = _job(_new_id(clone({**params, "config": {**config, "epochs": "3"}})))
    assert new.params["config"] == {**config, "epochs": 3}  # parsed, as the launch stores it

    neighbours = {**base, "image_set_id": 5, "resolution": 32, "max_images": 100, "k": 5,
                  "alpha": 0.05, "level": "p5"}  # fmt: skip
    old = _create(owner, JobSpec("nearest_neighbours", "cpu", neighbours))
    page = f"/jobs/{old}/clone"
    data = {"type": "nearest_neighbours", "queue": "cpu"}
    bad = _post(web, page, {**data, "params": json.dumps({**neighbours, "level": "p50"})}, page)
    assert bad.status_code == 422 and "level: Flag level: one of p1, p5." in bad.text
    good = _post(web, page, {**data, "params": json.dumps({**neighbours, "k": 7})}, page)
    assert _job(_new_id(good)).params["k"] == 7
