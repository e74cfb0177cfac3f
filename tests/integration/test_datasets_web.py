"""Datasets through the web: the import form, a real worker process, the dataset page, its
images and report, subsets, validation and who may see what."""

from __future__ import annotations

import html
import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from dataset_fixtures import (
    MedMnist,
    write_chexpert_missing_columns,
    write_folder,
    write_medmnist,
)
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from support import ROOT, Env, make_user
from web_client import WebClient

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.main import create_app
from app.models import Dataset, DatasetStatus, Job
from ml.data.store import PreparedDataset, open_dataset
from workers.runner import execute

# ---------------------------------------------------------------- helpers


def _dataset(dataset_id: int) -> Dataset:
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        db.expunge(dataset)
        return dataset


def _count(model: type) -> int:
    with session_scope() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _id_from(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text[-2000:]
    match = re.fullmatch(r"/datasets/(\d+)", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def _status_on_page(text: str) -> str | None:
    match = re.search(r'id="dataset-status">(\w+)<', text)
    return match.group(1) if match else None


def _wait_ready(web: WebClient, dataset_id: int, timeout: float = 120) -> str:
    """Poll the dataset's page as a browser would until the import has ended."""
    deadline = time.monotonic() + timeout
    while True:
        page = web.get(f"/datasets/{dataset_id}")
        assert page.status_code == 200, page.text[-2000:]
        status = _status_on_page(page.text)
        if status == "ready":
            return page.text
        assert status in ("importing", None), f"import ended {status}: {page.text[-3000:]}"
        assert time.monotonic() < deadline, f"dataset {dataset_id} still importing"
        time.sleep(0.25)


def _split_label_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(split names in column order, label -> cell texts) of the counts table."""
    table = text.split('id="split-label-table"', 1)[1].split("</table>", 1)[0]
    minus = "\u2212"  # the column headers read "+ / MINUS SIGN / ?"
    splits = re.findall(rf"<th>(\w+) \(\+ / {minus} / \?\)</th>", table)
    rows = {
        name: re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        for name, cells in re.findall(r"<tr[^>]*><td>([^<]+)</td>(.*?)</tr>", table, re.S)
    }
    return splits, rows


def _expected_table(store: PreparedDataset, splits: list[str]) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for label in store.info.label_names:
        cells = []
        for split in splits:
            values = [e.labels.get(label) for e in store.entries if e.split == split]
            positive = sum(v == 1 for v in values)
            missing = sum(v is None for v in values)
            cells.append(f"{positive} / {len(values) - positive - missing} / {missing}")
        total = sum(e.labels.get(label) == 1 for e in store.entries)
        known = sum(label in e.labels for e in store.entries)
        rows[label] = [*cells, str(total), f"{100 * total / known:.1f}%"]
    rows["All images"] = [*(str(store.info.splits[s]) for s in splits), str(len(store))]
    return rows


def _png(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as im:
        assert im.format == "PNG"
        return np.asarray(im)


# ---------------------------------------------------------------- end to end, real worker


@pytest.mark.worker
def test_import_through_the_form_with_a_real_worker(stack: Env, server_factory, worker_factory):  # type: ignore[no-untyped-def]
    rita = make_user("rita", "rita-password-1", "researcher")
    data = write_folder(stack.home / "imports" / "cxr", broken=True)
    server = server_factory(stack)
    worker_factory(stack)
    web = WebClient(httpx.Client(base_url=server.url, timeout=30))
    assert web.login("rita", "rita-password-1").status_code == 303
    form = web.get("/datasets")
    assert form.status_code == 200 and 'action="/datasets"' in form.text
    response = web.post_form(
        "/datasets",
        {
            "name": "CXR via web",
            "source": "cxr",  # relative: inside the first import root
            "format": "folder",
            "resolutions": "32, 16",
            "uncertain": "ignore",
            "window": "",
            "seed": "3",
            "rule": "crop",
            "description": "16 paediatric chest films",
        },
        token_from="/datasets",
        follow_redirects=False,
    )
    dataset_id = _id_from(response)
    text = _wait_ready(web, dataset_id)

    dataset = _dataset(dataset_id)
    assert dataset.status is DatasetStatus.ready and dataset.owner_id == rita
    assert (dataset.n_images, dataset.n_failed) == (data.n_images, 3)
    assert dataset.options["rule"] == "crop" and dataset.options["seed"] == 3
    assert dataset.source == str((stack.home / "imports" / "cxr").resolve())
    with session_scope() as db:
        job = db.get(Job, dataset.job_id)
        assert job is not None and job.type == "import_dataset"
        assert job.worker not in (None, "cli", "in-process")  # the worker process ran it
    store = open_dataset(dataset.path)
    assert store.info.content_hash == dataset.content_hash and store.resize_rule == "crop"

    splits, rows = _split_label_table(text)
    assert sorted(splits) == sorted(store.info.splits)
    assert rows == _expected_table(store, splits)
    assert dataset.content_hash in text and "Every file was imported." not in text

    small = _png(web.get(f"/datasets/{dataset_id}/images/5.png", params={"res": 16}))
    assert small.shape == (16, 16)
    np.testing.assert_array_equal(small, store.images(16)[5])
    largest = _png(web.get(f"/datasets/{dataset_id}/images/0.png"))
    assert largest.shape == (32, 32)  # no res: the largest stored resolution

    report = web.get(f"/datasets/{dataset_id}/report.txt")
    assert report.status_code == 200 and report.headers["content-disposition"] == "attachment"
    lines = report.text.splitlines()
    assert lines == dataset.errors and len(lines) == 3
    assert sorted(line.split(": ", 1)[0] for line in lines) == sorted(data.broken)
    for line in lines:
        assert html.escape(line, quote=False) in text  # also listed on the page


# ---------------------------------------------------------------- in-process app, SQLite


@pytest.fixture
def web(sqlite_env: Env) -> Iterator[WebClient]:
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield WebClient(client)


@pytest.fixture
def imports(sqlite_env: Env) -> Path:
    root = sqlite_env.home / "imports"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def mnist(imports: Path) -> MedMnist:
    return write_medmnist(imports / "mnist" / "pneumoniamnist.npz")


def _user_id(username: str) -> int:
    from app.models import User

    with session_scope() as db:
        user = db.scalar(select(User).where(User.username == username))
        assert user is not None
        return user.id


def _import_now(owner: str | None, name: str, source: Path) -> int:
    """A ready MedMNIST dataset (28 px), imported by the job runner in this process."""
    owner_id = _user_id(owner) if owner else None
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=owner_id,
            name=name,
            source=source,
            options=parse_import_options("medmnist", resolutions="28"),
        )
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    assert _dataset(dataset_id).status is DatasetStatus.ready
    return dataset_id


def _form(**values: str) -> dict[str, str]:
    base = {
        "name": "Tiny MNIST",
        "source": "mnist/pneumoniamnist.npz",
        "format": "medmnist",
        "resolutions": "28",
        "uncertain": "ignore",
        "window": "",
        "seed": "0",
        "rule": "pad",
        "description": "typed by hand",
    }
    return {**base, **values}


def _invalid_cases(imports: Path) -> dict[str, tuple[dict[str, str], str, str]]:
    outside = imports.parent / "outside"
    write_medmnist(outside / "pneumoniamnist.npz", split_sizes=(2, 1, 1))
    (imports / "escape").symlink_to(outside, target_is_directory=True)
    limited = "Imports from the web are limited to"
    return {
        "unknown format": ({"format": "dicom-zip"}, "format", "Unknown format 'dicom-zip'"),
        "word in resolutions": (
            {"resolutions": "32, big"},
            "resolutions",
            "'big' is not a whole number of pixels.",
        ),
        "tiny resolution": ({"resolutions": "2"}, "resolutions", "between 4 and 1024, got 2"),
        "absolute outside": ({"source": str(outside)}, "source", limited),
        "dot-dot": ({"source": "../outside/pneumoniamnist.npz"}, "source", limited),
        "dot-dot inside path": ({"source": f"{imports}/mnist/../../outside"}, "source", limited),
        "symlink out": ({"source": "escape/pneumoniamnist.npz"}, "source", limited),
        "missing": ({"source": "mnist/nothing.npz"}, "source", "does not exist"),
        "empty name": ({"name": "   "}, "name", "Give the dataset a name."),
        "duplicate name": ({"name": "Taken"}, "name", "A dataset called 'Taken' already exists"),
    }


def test_import_form_errors_rerender_422_with_the_typed_values(
    web: WebClient, imports: Path, mnist: MedMnist
) -> None:
    web.login("alice", "alice-password")
    _import_now("alice", "Taken", mnist.path)
    datasets, jobs = _count(Dataset), _count(Job)
    for case, (changed, field, message) in _invalid_cases(imports).items():
        values = _form(**changed)
        page = web.post_form("/datasets", values, token_from="/datasets")
        assert page.status_code == 422, case
        text = html.unescape(page.text)
        errors = re.findall(r'<p class="field-error">([^<]*)</p>', page.text)
        assert len(errors) == 1 and message in html.unescape(errors[0]), (case, errors)
        assert 'role="alert">Nothing was started' in page.text, case
        # The message sits right under its own field.
        before_error = page.text.split('<p class="field-error">', 1)[0]
        assert re.findall(r'name="(\w+)"', before_error)[-1] == field, case
        for key in ("name", "source", "resolutions", "seed"):
            if values[key].strip():
                assert f'name="{key}" ' in text and f'value="{values[key]}"' in text, (case, key)
        assert "typed by hand</textarea>" in text, case
        if changed.get("format") is None:
            assert '<option value="medmnist" selected>' in page.text, case
    assert (_count(Dataset), _count(Job)) == (datasets, jobs)  # nothing created, nothing queued


def test_access_control(web: WebClient, sqlite_env: Env, mnist: MedMnist) -> None:
    mine = _import_now("alice", "Alice's set", mnist.path)
    # Imported from the command line without --owner: every researcher sees it.
    cli = subprocess.run(
        [sys.executable, "-m", "app.cli", "dataset", "import", str(mnist.path),
         "--format", "medmnist", "--name", "Shared set", "--resolutions", "28"],
        cwd=ROOT, env=sqlite_env.environ(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    with session_scope() as db:
        shared = db.scalar(select(Dataset).where(Dataset.name == "Shared set"))
        assert shared is not None and shared.owner_id is None
        shared_id = shared.id
    make_user("bob", "bob-password-1", "researcher")
    make_user("carol", "carol-password", "reader")
    make_user("root", "root-password-1", "admin")

    anonymous = web.get("/datasets", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/datasets"
    assert web.get(f"/datasets/{mine}", follow_redirects=False).status_code == 303
    assert web.get(f"/datasets/{mine}/report.txt", follow_redirects=False).status_code == 303

    web.login("alice", "alice-password")
    listing = web.get("/datasets").text
    assert "Alice&#39;s set" in listing and "Shared set" in listing
    assert web.get(f"/datasets/{mine}").status_code == 200
    web.post_form("/logout", {}, token_from="/datasets")

    web.login("bob", "bob-password-1")
    listing = web.get("/datasets").text
    assert "Alice&#39;s set" not in listing and "Shared set" in listing
    page = web.get(f"/datasets/{shared_id}")
    assert page.status_code == 200 and _status_on_page(page.text) == "ready"
    assert _png(web.get(f"/datasets/{shared_id}/images/0.png")).shape == (28, 28)
    for url in (
        f"/datasets/{mine}",
        f"/datasets/{mine}/images/0.png",
        f"/datasets/{mine}/report.txt",
    ):
        assert web.get(url).status_code == 404, url
    taken = web.post_form(
        f"/datasets/{mine}/subsets",
        {"name": "stolen", "kind": "all", "value": "", "resolutions": "", "seed": "0"},
        token_from="/datasets",
    )
    assert taken.status_code == 404
    assert _count(Dataset) == 2
    web.post_form("/logout", {}, token_from="/datasets")

    web.login("root", "root-password-1")
    assert web.get(f"/datasets/{mine}").status_code == 200
    assert "Alice&#39;s set" in web.get("/datasets").text
    web.post_form("/logout", {}, token_from="/datasets")

    assert web.login("carol", "carol-password").status_code == 303
    for url in ("/datasets", f"/datasets/{shared_id}", f"/datasets/{shared_id}/images/0.png"):
        assert web.get(url).status_code == 403, url


def test_subset_form_creates_a_new_dataset(web: WebClient, mnist: MedMnist) -> None:
    web.login("alice", "alice-password")
    parent_id = _import_now("alice", "MNIST parent", mnist.path)
    parent = _dataset(parent_id)
    page = f"/datasets/{parent_id}"
    bad = web.post_form(
        f"{page}/subsets",
        {"name": "Too big", "kind": "samples_per_class", "value": "3",
         "resolutions": "64", "seed": "0"},
        token_from=page,
    )  # fmt: skip
    assert bad.status_code == 422
    assert "[64] not stored in this dataset (have 28)" in html.unescape(bad.text)
    assert 'value="Too big"' in bad.text and 'value="64"' in bad.text
    zero = web.post_form(
        f"{page}/subsets",
        {"name": "Zero", "kind": "samples_per_class", "value": "0", "resolutions": "", "seed": "0"},
        token_from=page,
    )
    assert zero.status_code == 422 and "Give a whole number between 1 and" in zero.text
    assert _count(Dataset) == 1

    response = web.post_form(
        f"{page}/subsets",
        {"name": "MNIST 1 per class", "kind": "samples_per_class", "value": "1",
         "resolutions": "28", "seed": "0"},
        token_from=page,
        follow_redirects=False,
    )  # fmt: skip
    child_id = _id_from(response)
    child = _dataset(child_id)
    assert (child.parent_id, child.format, child.status) == (
        parent_id,
        "subset",
        DatasetStatus.importing,
    )
    assert child.owner_id == parent.owner_id and child.job_id is not None
    assert _status_on_page(web.get(f"/datasets/{child_id}").text) == "importing"
    execute(child.job_id)  # the job the form queued, run here by the job runner

    text = _wait_ready(web, child_id, timeout=10)
    child = _dataset(child_id)
    assert child.info["splits"] == {"test": 4, "train": 2, "val": 4}
    assert child.n_images == 10 and child.content_hash != parent.content_hash
    assert f'subset of <a href="/datasets/{parent_id}">MNIST parent</a>' in text
    derived = open_dataset(child.path).manifest["derived_from"]
    assert derived["content_hash"] == parent.content_hash
    listing = web.get(page).text.split('id="subsets"', 1)[1]
    assert f'<a href="/datasets/{child_id}">MNIST 1 per class</a>' in listing


def test_unknown_ids_and_rows_are_404(web: WebClient, mnist: MedMnist) -> None:
    web.login("alice", "alice-password")
    dataset_id = _import_now("alice", "MNIST rows", mnist.path)
    for url in ("/datasets/999", "/datasets/999/images/0.png", "/datasets/999/report.txt"):
        response = web.get(url)
        assert response.status_code == 404 and "There is no dataset #999" in response.text, url
    subset = web.post_form(
        "/datasets/999/subsets",
        {"name": "x", "kind": "all", "value": "", "resolutions": "", "seed": "0"},
        token_from="/datasets",
    )
    assert subset.status_code == 404
    last = _png(web.get(f"/datasets/{dataset_id}/images/15.png", params={"res": 28}))
    np.testing.assert_array_equal(last, open_dataset(_dataset(dataset_id).path).images(28)[15])
    for row, res in ((16, 28), (-1, 28), (0, 64)):
        response = web.get(f"/datasets/{dataset_id}/images/{row}.png", params={"res": res})
        assert response.status_code == 404, (row, res)
    assert "row 16 is outside 0..15" in web.get(f"/datasets/{dataset_id}/images/16.png").text
    assert web.get(f"/datasets/{dataset_id}/report.txt").text == "Every file was imported.\n"
    assert web.get("/datasets/not-a-number").status_code == 422


def test_report_of_a_failed_import_does_not_claim_success(web: WebClient, imports: Path) -> None:
    bad = write_chexpert_missing_columns(imports / "bad")
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=_user_id("alice"),
            name="Broken CSV",
            source=bad,
            options=parse_import_options("chexpert", resolutions="16"),
        )
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    assert _dataset(dataset_id).status is DatasetStatus.failed
    web.login("alice", "alice-password")
    page = web.get(f"/datasets/{dataset_id}").text
    assert _status_on_page(page) == "failed" and "missing column(s) Edema" in page
    report = web.get(f"/datasets/{dataset_id}/report.txt")
    assert report.status_code in (200, 409)
    assert "Every file was imported" not in report.text


def test_subset_of_an_unfinished_dataset_explains_why(web: WebClient, mnist: MedMnist) -> None:
    with session_scope() as db:
        dataset, _ = start_import(
            db,
            owner_id=_user_id("alice"),
            name="Still importing",
            source=mnist.path,
            options=parse_import_options("medmnist", resolutions="28"),
        )
        dataset_id = dataset.id  # its job is never run: the dataset stays "importing"
    web.login("alice", "alice-password")
    response = web.post_form(
        f"/datasets/{dataset_id}/subsets",
        {"name": "Too early", "kind": "all", "value": "", "resolutions": "", "seed": "0"},
        token_from="/datasets",
    )
    assert response.status_code == 422
    assert _count(Dataset) == 1
    assert "not ready yet" in response.text
