"""Server-side render time of the job pages (and the other list pages) with 1,000 jobs.

Fills a fresh SQLite database with one researcher's jobs of every type and status (params and
results shaped like the handlers' own), datasets and image sets, then times each page in
process (TestClient, no network) and prints p50/p95 beside /healthz measured in the same run.
The target: every page under 200 ms of server time.

    .venv/bin/python bench/page_render.py
    .venv/bin/python bench/page_render.py --jobs 5000 --repeat 50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
USER, PASSWORD = "bench-researcher", "bench-password-1"
TARGET_MS = 200.0
LABELS = ("normal", "pneumonia")
# Status mix of a busy installation: mostly finished, some failures, a few live.
STATUSES = (
    ("succeeded", 0.62),
    ("failed", 0.15),
    ("cancelled", 0.08),
    ("queued", 0.10),
    ("running", 0.05),
)
TYPE_MIX = (
    ("image_stats", 0.10),
    ("import_dataset", 0.04),
    ("train_gan", 0.12),
    ("sample", 0.12),
    ("translate", 0.04),
    ("train_classifier", 0.28),
    ("evaluate_fidelity", 0.12),
    ("nearest_neighbours", 0.12),
    ("attribution", 0.06),
)


def configure(home: Path) -> None:
    """Settings are read once per process: point them at the fresh home before any import."""
    os.environ.update(
        SYNTHBENCH_HOME=str(home),
        SYNTHBENCH_DATABASE_URL=f"sqlite:///{home / 'bench.sqlite'}",
        SYNTHBENCH_BROKER_URL=f"sqla+sqlite:///{home / 'broker.sqlite'}",
        SYNTHBENCH_SECRET_KEY=SECRET,
    )
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------- params and results by type


def _auc(rng: random.Random) -> dict[str, float]:
    return {label: round(rng.uniform(0.6, 0.95), 4) for label in LABELS}


def _roc(rng: random.Random, points: int = 120) -> dict[str, dict[str, list[float]]]:
    grid = sorted(rng.random() for _ in range(points))
    return {label: {"fpr": grid, "tpr": [min(1.0, x * 1.3) for x in grid]} for label in LABELS}


def _dataset_params(dataset_id: int) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "dataset_path": f"/srv/synthbench/datasets/{dataset_id}",
        "dataset_hash": f"{dataset_id:064x}",
    }


def _image_stats(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    images = [
        {
            "name": f"IM-{i:04d}.jpeg",
            "label": LABELS[i % 2],
            "height": rng.randint(900, 2000),
            "width": rng.randint(900, 2000),
            "mean": rng.random(),
            "std": rng.random() / 4,
            "p01": rng.random() / 10,
            "p99": 0.9 + rng.random() / 10,
        }
        for i in range(16)
    ]
    result = {
        "n_images": 16,
        "mean_height": 1400.0,
        "mean_width": 1500.0,
        "by_label": {label: {"n": 8, "mean": rng.random()} for label in LABELS},
        "histogram": [rng.randint(0, 10**6) for _ in range(32)],
        "images": images,
        "collection": "paediatric-cxr",
        "attribution": "Kermany D et al., CC BY 4.0.",
    }
    return {"collection": "paediatric-cxr"}, result


def _import_dataset(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    dataset_id = job["dataset_id"]
    params = {
        "dataset_id": dataset_id,
        "source": f"/srv/imports/set-{dataset_id}",
        "dest": f"/srv/synthbench/datasets/{dataset_id}",
        "format": "folder",
        "resolutions": [32, 64],
        "seed": 0,
    }
    result = {
        "content_hash": f"{dataset_id:064x}",
        "n_images": 5000,
        "n_patients": 1200,
        "label_names": list(LABELS),
        "resolutions": [32, 64],
        "splits": {"train": 3500, "val": 500, "test": 1000},
        "n_read": 5003,
        "n_failed": 3,
        "errors": [f"bad-{i}.png: cannot decode" for i in range(3)],
    }
    return params, result


def _train_gan(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    config = {"arch": "stylegan2", "resolution": 64, "batch_size": 32, "kimg": 500.0}
    config |= {"tick_kimg": 4.0, "snapshot_ticks": 10, "seed": rng.randint(0, 99)}
    params = {**_dataset_params(job["dataset_id"]), "config": config}
    result = {
        "kimg": 500.0,
        "ticks": 125,
        "snapshots": 13,
        "best_fid": rng.uniform(20, 80),
        "best_kimg": 480.0,
        "stopped_early": False,
        "images_per_second": 850.0,
        "class_names": list(LABELS),
        "checkpoint": f"/srv/synthbench/artefacts/jobs/{job['id']}/checkpoint.pt",
        "out": f"/srv/synthbench/artefacts/jobs/{job['id']}",
        "dataset_hash": params["dataset_hash"],
        "device": "cuda",
    }
    return params, result


def _sample(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    params = {
        "train_job_id": job["id"] - 1,
        "checkpoint": f"/srv/synthbench/artefacts/jobs/{job['id'] - 1}/checkpoint.pt",
        "name": f"Samples {job['id']}",
        "per_class": 50,
        "truncation_psi": 1.0,
        "seed": 0,
        "dicom": False,
    }
    result = {
        "n_images": 100,
        "per_class": {label: 50 for label in LABELS},
        "source": "stylegan2 64px kimg 500",
        "image_set_id": job["image_set_id"],
        "zip": f"/srv/synthbench/artefacts/jobs/{job['id']}/samples.zip",
    }
    return params, result


def _translate(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    a, b = _dataset_params(job["dataset_id"]), _dataset_params(job["dataset_id"] + 1)
    params = {f"{k.replace('dataset', 'dataset_a')}": v for k, v in a.items()}
    params |= {f"{k.replace('dataset', 'dataset_b')}": v for k, v in b.items()}
    params |= {"config": {"resolution": 64, "kimg": 50.0}, "name": f"Translated {job['id']}"}
    result = {
        "n_translated": 200,
        "translate_split": "test",
        "direction": "a2b",
        "image_set_id": job["image_set_id"],
        "translated_cycle": {"cycle_psnr": 24.1, "cycle_ssim": 0.81, "cycle_ms_ssim": 0.9},
    }
    return params, result


def _train_classifier(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    train_on = rng.choice(("real", "synthetic", "mixed"))
    set_id = job["image_set_id"] if train_on != "real" else None
    params = {
        **_dataset_params(job["dataset_id"]),
        "train_on": train_on,
        "config": {"arch": "densenet121", "resolution": 64, "epochs": 20, "seed": 0},
        "test_set_ids": [job["image_set_id"]],
    }
    if set_id:
        params["image_set_id"] = set_id
    auc = _auc(rng)
    synthetic = {"auc": _auc(rng), "macro_auc": 0.8, "n": 100, "trained_on_it": bool(set_id)}
    result = {
        "task": "multiclass",
        "label_names": list(LABELS),
        "auc": auc,
        "macro_auc": statistics.mean(auc.values()),
        "roc": _roc(rng),
        "best_epoch": 14,
        "val_macro_auc": 0.84,
        "epochs_run": 20,
        "n_train_real": 3500 if train_on != "synthetic" else 0,
        "n_train_synthetic": 0 if train_on == "real" else 2000,
        "n_val": 500,
        "n_test": 1000,
        "device": "cuda",
        "stopped_early": False,
        "selection": "val_macro_auc",
        "notes": [],
        "synthetic_tests": {str(job["image_set_id"]): synthetic},
        "train_on": train_on,
        "image_set_id": set_id,
        "dataset_hash": params["dataset_hash"],
        "arch": "densenet121",
        "resolution": 64,
    }
    return params, result


def _fidelity_row(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "n_a": 3500,
        "n_b": n,
        "fid": rng.uniform(10, 90),
        "kid_mean": rng.random() / 20,
        "kid_std": rng.random() / 200,
        "precision": rng.random(),
        "recall": rng.random(),
        "density": rng.uniform(0.5, 1.5),
        "coverage": rng.random(),
    }


def _evaluate_fidelity(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    params = {
        **_dataset_params(job["dataset_id"]),
        "image_set_id": job["image_set_id"],
        "features": "inception",
        "resolution": 64,
        "max_images": 5000,
    }
    result = {
        "features": "inception",
        "extractor": "inception-v3",
        "image_set_id": job["image_set_id"],
        "resolution": 64,
        "synthetic_vs_train": _fidelity_row(rng, 2000),
        "synthetic_matched_vs_train": _fidelity_row(rng, 1000),
        "floor_test_vs_train": _fidelity_row(rng, 1000),
        "n_train": 3500,
        "n_test": 1000,
        "n_synthetic": 2000,
    }
    return params, result


def _space(rng: random.Random, space: str) -> dict[str, Any]:
    return {
        "k": 5,
        "space": space,
        "n_synthetic": 2000,
        "n_train": 3500,
        "n_test": 1000,
        "baseline_n": 1000,
        "coarse_baseline": False,
        "baseline_zero_dcr": 0,
        "percentiles": {"p1": 1.0, "p5": 5.0},
        "thresholds": {"p1": rng.random(), "p5": rng.random()},
        "share_flagged": {"p1": rng.random() / 50, "p5": rng.random() / 10},
        "n_flagged": {"p1": 12, "p5": 80},
        "dcr": {"median": rng.random(), "min": rng.random() / 10},
        "baseline_dcr": {"median": rng.random(), "min": rng.random() / 10},
        "nndr": {"median": rng.random()},
        "baseline_nndr": {"median": rng.random()},
    }


def _nearest_neighbours(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    params = {
        **_dataset_params(job["dataset_id"]),
        "image_set_id": job["image_set_id"],
        "resolution": 64,
        "max_images": 5000,
        "k": 5,
        "level": "p1",
        "max_share": 0.02,
    }
    spaces = {space: _space(rng, space) for space in ("pixel", "domain")}
    verdicts = {s: {"passes": True, "reason": f"{s}: 0.4% flagged (max 2%)."} for s in spaces}
    result = {
        "image_set_id": job["image_set_id"],
        "resolution": 64,
        "k": 5,
        "level": "p1",
        "max_share": 0.02,
        "spaces": spaces,
        "verdicts": verdicts,
        "release": {"passes": True, "reasons": [v["reason"] for v in verdicts.values()]},
        "n_gallery": 48,
    }
    return params, result


def _attribution(rng: random.Random, job: dict[str, Any]) -> tuple[dict, dict]:
    methods = ["integrated_gradients", "occlusion"]
    params = {
        **_dataset_params(job["dataset_id"]),
        "classifiers": {"real": job["id"] - 2, "synthetic": job["id"] - 1},
        "methods": methods,
        "n_images": 8,
        "n_steps": 32,
    }
    items = [
        {
            "target": LABELS[i % 2],
            "row": i,
            "files": {
                m: {r: f"maps/{m}_{r}_{i}.png" for r in ("real", "synthetic")} for m in methods
            },
        }
        for i in range(8)
    ]
    agreement = {m: {"spearman": rng.random(), "top_iou": rng.random()} for m in methods}
    for item in items:
        item["agreement"] = agreement
    result = {
        "classifiers": params["classifiers"],
        "methods": methods,
        "items": items,
        "agreement": agreement,
        "ig_max_abs_delta": 0.004,
    }
    return params, result


BUILDERS = {
    "image_stats": _image_stats,
    "import_dataset": _import_dataset,
    "train_gan": _train_gan,
    "sample": _sample,
    "translate": _translate,
    "train_classifier": _train_classifier,
    "evaluate_fidelity": _evaluate_fidelity,
    "nearest_neighbours": _nearest_neighbours,
    "attribution": _attribution,
}


# ---------------------------------------------------------------- the database


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in mix], weights=[w for _, w in mix])[0]


def _image_sets(db: Any, owner_id: int, count: int, per_set: int) -> list[int]:
    from app.models import Image, ImageSet, Origin

    ids = []
    for s in range(count):
        image_set = ImageSet(name=f"Synthetic set {s}", owner_id=owner_id, kind="samples")
        db.add(image_set)
        db.flush()
        for i in range(per_set):
            key = f"b{s:04d}{i:06d}"
            db.add(
                Image(
                    image_set_id=image_set.id,
                    key=key,
                    origin=Origin.synthetic if i % 3 else Origin.real,
                    label=LABELS[i % 2],
                    source="stylegan2",
                    original_name=f"{key}.png",
                    sha256=f"{s:032x}{i:032x}",
                    source_format="png",
                    width=64,
                    height=64,
                )
            )
        ids.append(image_set.id)
    return ids


def _datasets(db: Any, owner_id: int, count: int) -> list[int]:
    from app.models import Dataset, DatasetStatus

    ids = []
    for d in range(count):
        dataset = Dataset(
            name=f"Chest X-rays {d}",
            owner_id=owner_id,
            status=DatasetStatus.ready if d % 6 else DatasetStatus.failed,
            format="folder",
            source=f"/srv/imports/set-{d}",
            n_images=5000,
            n_patients=1200,
            info={"label_names": list(LABELS), "resolutions": [32, 64], "splits": {}},
        )
        db.add(dataset)
        db.flush()
        dataset.path = f"/srv/synthbench/datasets/{dataset.id}"
        ids.append(dataset.id)
    return ids


def _job_row(rng: random.Random, owner_id: int, job_id: int, refs: dict[str, Any]) -> Any:
    from app.jobs.naming import dataset_of, default_name
    from app.jobs.service import artefact_dir_for
    from app.models import Job, JobStatus

    job_type, status = _pick(rng, TYPE_MIX), JobStatus(_pick(rng, STATUSES))
    facts = {
        "id": job_id,
        "dataset_id": rng.choice(refs["datasets"]),
        "image_set_id": rng.choice(refs["image_sets"]),
    }
    params, result = BUILDERS[job_type](rng, facts)
    job = Job(id=job_id, type=job_type, queue=rng.choice(("cpu", "gpu")), params=params)
    # Named as a launch form would name them (the list searches and shows names).
    job.dataset_id = dataset_of(params)
    job.name = default_name(job_type, params, f"Dataset {job.dataset_id}")
    job.owner_id, job.status = owner_id, status
    job.artefact_dir = str(artefact_dir_for(job_id))
    job.progress = {"succeeded": 1.0, "running": rng.random(), "queued": 0.0}.get(status, 0.4)
    job.message = {"succeeded": "done", "running": "epoch 7 of 20"}.get(status, "")
    if status is JobStatus.succeeded:
        job.result = result
        job.resources = {"wall_s": 812.0, "device": "cuda", "attempts": 1, "energy_note": "off"}
    if status is JobStatus.failed:
        job.error = "RuntimeError: CUDA out of memory\n\n" + "  File ...\n" * 8
    return job


def fill(jobs: int, seed: int = 0) -> tuple[int, dict[str, int]]:
    """The researcher's id and, per job type, one succeeded job to open."""
    from app.auth.service import create_user
    from app.db import session_scope
    from app.migrate import upgrade
    from app.models import Role

    upgrade()
    rng = random.Random(seed)
    with session_scope() as db:
        owner = create_user(db, username=USER, password=PASSWORD, role=Role.researcher).id
        refs = {"datasets": _datasets(db, owner, 12), "image_sets": _image_sets(db, owner, 25, 40)}
        rows = [_job_row(rng, owner, i, refs) for i in range(1, jobs + 1)]
        db.add_all(rows)
        samples: dict[str, int] = {"dataset": refs["datasets"][1]}
        for row in rows:
            if row.status.value == "succeeded":
                samples.setdefault(row.type, row.id)
            elif row.status.value == "running":
                samples.setdefault("running", row.id)
    return owner, samples


def write_artefacts(samples: dict[str, int]) -> None:
    """What the workers leave behind for the pages that read their folders."""
    from app.jobs.service import artefact_dir_for

    rng = random.Random(1)
    gan = artefact_dir_for(samples["train_gan"])
    (gan / "grids").mkdir(parents=True)
    ticks = [
        {"tick": t, "kimg": t * 4.0, "loss_d": rng.random(), "loss_g": 1 + rng.random()}
        | {"images_per_second": 850.0, "seconds": 4.7}
        for t in range(1, 126)
    ]
    _jsonl(gan / "metrics.jsonl", ticks)
    shots = [
        {"snapshot": s, "kimg": s * 40.0, "grid": f"grid-{s:04d}.png", "fid": 90 - s}
        for s in range(1, 14)
    ]
    _jsonl(gan / "snapshots.jsonl", shots)
    for shot in shots:
        (gan / "grids" / shot["grid"]).write_bytes(b"\x89PNG" + bytes(2000))
    (gan / "checkpoint.pt").write_bytes(bytes(100_000))
    run = {
        "dataset_hash": "0" * 64,
        "code_version": "b05bbd9",
        "torch": "2.4",
        "config": {"seed": 3},
        "class_names": list(LABELS),
        "class_counts": [1700, 1800],
        "parameters": {"generator": 2_400_000, "discriminator": 2_300_000},
        "n_train_images": 3500,
    }
    (gan / "run.json").write_text(json.dumps(run))
    classifier = artefact_dir_for(samples["train_classifier"])
    classifier.mkdir(parents=True)
    epochs = [{"epoch": e, "loss": rng.random(), "val_macro_auc": rng.random()} for e in range(20)]
    _jsonl(classifier / "metrics.jsonl", epochs)
    (classifier / "predictions.npz").write_bytes(bytes(40_000))


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# ---------------------------------------------------------------- timing


def login(client: Any) -> None:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the login page has no CSRF token"
    data = {"username": USER, "password": PASSWORD, "csrf_token": match.group(1)}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text


def timed(client: Any, url: str, repeat: int, headers: dict[str, str] | None = None) -> list[float]:
    """Milliseconds per request, after two untimed warm-up requests (template compilation)."""
    for _ in range(2):
        assert client.get(url, headers=headers).status_code == 200, url
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, f"{url}: {response.status_code}"
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def pages(samples: dict[str, int]) -> list[tuple[str, str, dict[str, str] | None]]:
    shown = [
        ("/jobs", "/jobs", None),
        ("/jobs?page=10", "/jobs?page=10", None),
        ("/jobs filtered and searched", "/jobs?type=train_gan&status=succeeded&q=gan", None),
        ("/jobs (htmx refresh)", "/jobs", {"HX-Request": "true"}),
    ]
    for job_type in ("image_stats", "train_gan", "train_classifier", "evaluate_fidelity"):
        shown.append((f"/jobs/{{id}} {job_type}", f"/jobs/{samples[job_type]}", None))
    for job_type in ("nearest_neighbours", "attribution", "sample"):
        shown.append((f"/jobs/{{id}} {job_type}", f"/jobs/{samples[job_type]}", None))
    running = f"/jobs/{samples['running']}"
    shown.append(("/jobs/{id} running (poll)", running, {"HX-Request": "true"}))
    shown.append(("/jobs/{id}/clone", f"/jobs/{samples['train_gan']}/clone", None))
    shown += [("/datasets", "/datasets", None), ("/imagesets", "/imagesets", None)]
    gan = samples["train_gan"]
    shown += [
        ("/gans/{id}/benchmark", f"/gans/{gan}/benchmark", None),
        ("/datasets/{id}/benchmark (dashboard)", f"/datasets/{samples['dataset']}/benchmark", None),
        ("/gans/compare (picker)", "/gans/compare", None),
        ("/sweeps", "/sweeps", None),
    ]
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    configure(Path(tempfile.mkdtemp(prefix="synthbench-bench-")))
    from fastapi.testclient import TestClient

    from app.main import create_app

    started = time.perf_counter()
    _, samples = fill(args.jobs)
    write_artefacts(samples)
    print(
        f"{args.jobs} jobs filled in {time.perf_counter() - started:.1f} s; SQLite, in-process, "
        f"{os.cpu_count()} CPUs, {args.repeat} timed requests per page"
    )
    with TestClient(create_app(), base_url="http://testserver") as client:
        login(client)
        base = timed(client, "/healthz", args.repeat)
        base_p50 = statistics.median(base)
        print(f"{'page':<34} {'p50 ms':>8} {'p95 ms':>8} {'p50 / healthz':>14}")
        print(f"{'/healthz (baseline)':<34} {base_p50:8.1f} {p95(base):8.1f} {1:14.1f}")
        slow = []
        for name, url, headers in pages(samples):
            times = timed(client, url, args.repeat, headers)
            p50 = statistics.median(times)
            print(f"{name:<34} {p50:8.1f} {p95(times):8.1f} {p50 / base_p50:14.1f}")
            if p95(times) > TARGET_MS:
                slow.append(name)
    verdict = f"over {TARGET_MS:.0f} ms at p95: {', '.join(slow)}" if slow else "all under"
    print(f"target {TARGET_MS:.0f} ms server time: {verdict}")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
