"""Issue 17, end to end: a TorchScript generator uploaded through the web form and checked by a
real Celery worker, then sampled into a synthetic image set like a trained run; bad uploads
get a clear error. And one GAN per class launched from the form on the demo X-rays, sampled
into one set with each class from its own generator."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from evaluation_fixtures import import_cxr
from sqlalchemy import select
from support import Env, load_job, make_user, wait_for_job
from web_client import WebClient

from app.db import session_scope
from app.models import Image, ImageSet, JobStatus, Origin
from workers.runner import execute

pytestmark = [pytest.mark.worker, pytest.mark.filterwarnings("ignore:`torch.jit")]

MANIFEST = {
    "name": "Site B generator",
    "latent_size": 8,
    "classes": ["normal", "pneumonia"],
    "resolution": 16,
    "channels": 1,
    "output_range": [-1, 1],
}


class TwoClassGenerator(torch.nn.Module):
    def __init__(self, resolution: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(2, 8)
        self.linear = torch.nn.Linear(8, resolution * resolution)
        self.resolution = resolution

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.linear(z + self.embed(y)))
        return x.view(-1, 1, self.resolution, self.resolution)


def _module_bytes(tmp_path: Path, resolution: int = 16) -> bytes:
    path = tmp_path / f"g{resolution}.pt"
    torch.jit.script(TwoClassGenerator(resolution)).save(str(path))
    return path.read_bytes()


def _upload(web: WebClient, module: bytes, manifest: dict, **kwargs: object) -> httpx.Response:
    return web.post_form(
        "/gans/import",
        {"name": "", "manifest_text": json.dumps(manifest)},
        token_from="/gans/import",
        files={"generator": ("g.pt", module, "application/octet-stream")},
        **kwargs,
    )


def test_upload_check_and_sample_a_torchscript_generator(  # type: ignore[no-untyped-def]
    stack: Env, tmp_path: Path, server_factory, worker_factory
) -> None:
    make_user("bea", "bea-password-1", "researcher")
    server = server_factory(stack)
    worker_factory(stack, "worker-1")
    web = WebClient(httpx.Client(base_url=server.url, timeout=30))
    assert web.login("bea", "bea-password-1").status_code == 303
    assert 'name="generator"' in web.get("/gans/import").text

    # Refused at once, nothing queued: not a TorchScript file; a manifest without its fields.
    png = _upload(web, b"\x89PNG\r\n\x1a\n" + bytes(64), MANIFEST)
    assert png.status_code == 422 and "not a TorchScript module" in png.text
    partial = {k: v for k, v in MANIFEST.items() if k != "latent_size"}
    lacking = _upload(web, _module_bytes(tmp_path), partial)
    assert lacking.status_code == 422 and "lacks latent_size" in lacking.text

    # A module whose images are not what its manifest says: the worker's check fails the job.
    wrong = _upload(web, _module_bytes(tmp_path, 32), MANIFEST, follow_redirects=False)
    assert wrong.status_code == 303
    wrong_id = int(re.fullmatch(r"/gans/generators/(\d+)", wrong.headers["location"]).group(1))
    failed = wait_for_job(wrong_id, lambda j: j.status.finished, timeout=120)
    assert failed.status is JobStatus.failed and "manifest says (8, 1, 16, 16)" in failed.error
    assert "did not pass its check" in web.get(f"/gans/generators/{wrong_id}").text

    good = _upload(web, _module_bytes(tmp_path), MANIFEST, follow_redirects=False)
    job_id = int(re.fullmatch(r"/gans/generators/(\d+)", good.headers["location"]).group(1))
    job = wait_for_job(job_id, lambda j: j.status.finished, timeout=120)
    assert job.status is JobStatus.succeeded, job.error
    page = web.get(f"/gans/generators/{job_id}")
    assert page.status_code == 200 and f'action="/gans/{job_id}/sample"' in page.text
    preview = web.get(f"/jobs/{job_id}/files/{job.result['preview']}")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    assert f"/gans/generators/{job_id}" in web.get(f"/jobs/{job_id}").text

    sampled = web.post_form(
        f"/gans/{job_id}/sample",
        {"name": "Site B samples", "per_class": "4", "seed": "3"},
        token_from=f"/gans/generators/{job_id}",
        follow_redirects=False,
    )
    assert sampled.status_code == 303, sampled.text[-800:]
    sample_id = int(re.fullmatch(r"/jobs/(\d+)", sampled.headers["location"]).group(1))
    sample_job = wait_for_job(sample_id, lambda j: j.status.finished, timeout=120)
    assert sample_job.status is JobStatus.succeeded, sample_job.error
    assert sample_job.result["checkpoint_sha256"] == job.result["sha256"]
    # Its page names the imported module, not a checkpoint.pt that does not exist.
    sample_page = web.get(f"/jobs/{sample_id}").text
    assert "imported</strong> TorchScript module" in sample_page
    assert "checkpoint.pt" not in sample_page
    # No matched-real study offered: an imported generator has no dataset to match from.
    assert f'action="/jobs/{sample_id}/study"' not in sample_page
    assert "/studies/new" in sample_page
    set_id = sample_job.result["image_set_id"]
    with session_scope() as db:
        image_set = db.get(ImageSet, set_id)
        assert image_set is not None and image_set.kind == "sampling"
        images = list(db.scalars(select(Image).where(Image.image_set_id == set_id)))
    assert len(images) == 8 and {i.origin for i in images} == {Origin.synthetic}
    assert sorted(i.label for i in images) == ["normal"] * 4 + ["pneumonia"] * 4


def test_one_gan_per_class_from_the_form_samples_one_set(sqlite_env: Env) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    owner = make_user("cai", "cai-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    with TestClient(create_app()) as client:
        web = WebClient(client)
        assert web.login("cai", "cai-password-1").status_code == 303
        assert 'name="per_class"' in web.get("/gans/new").text
        form = {
            "dataset": str(dataset_id),
            "preset": "tiny-cpu",
            "kimg": "0.032",
            "tick_kimg": "0.016",
            "snapshot_ticks": "1",
            "per_class": "true",
            "queue": "cpu",
        }
        launched = web.post_form("/gans", form, token_from="/gans/new", follow_redirects=False)
        assert launched.status_code == 303, launched.text[-1500:]
        train_id = int(re.fullmatch(r"/jobs/(\d+)", launched.headers["location"]).group(1))
        assert load_job(train_id).params["config"]["per_class"] is True
        execute(train_id)
        train = load_job(train_id)
        assert train.status is JobStatus.succeeded, train.error
        assert [c["name"] for c in train.result["per_class"]] == train.result["class_names"]
        page = web.get(f"/jobs/{train_id}")
        # Both classes' snapshots on one slider, the sample form offered.
        assert page.status_code == 200 and f'action="/gans/{train_id}/sample"' in page.text
        grid = web.get(f"/gans/{train_id}/grid", params={"snapshot": 4})
        assert grid.status_code == 200
        src = re.search(r'src="([^"]+)"', grid.text).group(1)
        assert "class-01" in src and web.get(src).content.startswith(b"\x89PNG")
        sampled = web.post_form(
            f"/gans/{train_id}/sample",
            {"name": "Per-class samples", "per_class": "3"},
            token_from=f"/jobs/{train_id}",
            follow_redirects=False,
        )
        sample_id = int(re.fullmatch(r"/jobs/(\d+)", sampled.headers["location"]).group(1))
    execute(sample_id)
    sample = load_job(sample_id)
    assert sample.status is JobStatus.succeeded, sample.error
    with zipfile.ZipFile(sample.result["zip"]) as zf:
        rows = list(csv.DictReader(zf.read("manifest.csv").decode().splitlines()))
    assert "per-class" in rows[0]["group"]
    with session_scope() as db:
        images = list(
            db.scalars(select(Image).where(Image.image_set_id == sample.result["image_set_id"]))
        )
    assert sorted(i.label for i in images) == ["normal"] * 3 + ["pneumonia"] * 3


def test_the_cli_imports_samples_and_trains_per_class(sqlite_env: Env, tmp_path: Path) -> None:
    from cli_in_process import invoke_cli

    owner = make_user("dan@example.org", "dan-password-1", "researcher")
    module = tmp_path / "g.pt"
    module.write_bytes(_module_bytes(tmp_path))
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({k: v for k, v in MANIFEST.items() if k != "channels"}))
    lacking = invoke_cli("run", "import-generator", str(module), "--manifest", str(manifest))
    assert lacking.returncode == 1 and "--manifest: The manifest lacks channels" in lacking.stderr

    manifest.write_text(json.dumps(MANIFEST))
    wrong = tmp_path / "g32.pt"
    wrong.write_bytes(_module_bytes(tmp_path, 32))
    bad = invoke_cli("run", "import-generator", str(wrong), "--manifest", str(manifest))
    assert bad.returncode == 1 and "manifest says (8, 1, 16, 16)" in bad.stderr

    done = invoke_cli("run", "import-generator", str(module), "--manifest", str(manifest), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    imported = json.loads(done.stdout[done.stdout.index("{") :])
    assert imported["class_names"] == MANIFEST["classes"]
    sampled = invoke_cli(
        "run", "sample", "--job", str(imported["job_id"]), "--per-class", "2",
        "--classes", "pneumonia", "--owner", "dan@example.org", "--json",
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    result = json.loads(sampled.stdout[sampled.stdout.index("{") :])
    assert result["per_class"] == {"pneumonia": 2} and result["image_set_id"]

    import_cxr(sqlite_env, owner)
    trained = invoke_cli(
        "run", "train-gan", "--dataset", "CXR", "--preset", "tiny-cpu", "--kimg", "0.016",
        "--tick-kimg", "0.016", "--snapshot-ticks", "1", "--per-class", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    run = json.loads(trained.stdout[trained.stdout.index("{") :])
    assert [c["name"] for c in run["per_class"]] == run["class_names"]
    assert run["kimg"] == pytest.approx(0.016 * len(run["class_names"]))
