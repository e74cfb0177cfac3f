"""Handlers of the evaluation jobs: utility, fidelity, privacy and attribution.

Each reads the real dataset from its prepared store and the synthetic set from the image
store, calls `ml/`, writes its detailed outputs to the job's folder and returns the summary
the dashboards show. All four are deterministic, so a redelivered job recomputes the same.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.data.store import open_dataset
from ml.data.training_images import TrainingImages
from ml.progress import ProgressFn, StopFn
from ml.run_folder import FEATURES

GALLERY_SIZE = 48
FEATURE_BATCH = 64
# Paired quality against the nearest real image is averaged over a seeded random sample of at
# most this many synthetic images (plus the gallery's): the six metrics took 1.3 s per 256-px
# pair on a busy 2-core CPU (bench/quality_metrics.py), and the standard error of a mean of 500
# is under 0.005 for scores spread like SSIM's (sd ~0.1).
QUALITY_MAX_IMAGES = 500
QUALITY_SEED = 0


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _load_set(image_set_id: int, resolution: int, channels: int, limit: int | None = None):
    from app.db import session_scope
    from app.evaluation.sources import load_set

    with session_scope() as db:
        return load_set(db, image_set_id, resolution, channels, limit=limit)


def _classifier_dir(job_id: int) -> Path:
    from app.db import session_scope
    from app.models import Job

    with session_scope() as db:
        job = db.get(Job, job_id)
        if job is None or job.type != "train_classifier" or not job.artefact_dir:
            raise ValueError(f"classifier job {job_id} does not exist")
        return Path(job.artefact_dir)


def train_classifier(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    from ml.training.classifier import ClassifierConfig, SyntheticImages
    from ml.training.classifier import train_classifier as train

    config = ClassifierConfig(**{**params["config"], "device": str(_device())})
    synthetic = None
    if params["train_on"] in ("synthetic", "mixed"):
        channels = open_dataset(params["dataset_path"]).channels
        arrays = _load_set(params["image_set_id"], config.resolution, channels)
        synthetic = SyntheticImages(arrays.images, arrays.labels)
    result = train(
        params["dataset_path"],
        out,
        config,
        use_real=params["train_on"] in ("real", "mixed"),
        synthetic=synthetic,
        progress=progress,
        should_stop=stop,
    )
    on_sets = {
        str(set_id): _test_on_set(out, set_id, params.get("image_set_id"))
        for set_id in params.get("test_set_ids", [])
    }
    external = {
        key: _test_on_dataset(out, ext) for key, ext in params.get("external_datasets", {}).items()
    }
    return {
        **asdict(result),
        "auc_ci": _internal_intervals(out, result.label_names),
        "synthetic_tests": on_sets,
        "external_tests": external,
        "train_on": params["train_on"],
        "image_set_id": params.get("image_set_id"),
        "dataset_hash": params["dataset_hash"],
        "arch": config.arch,
        "resolution": config.resolution,
    }


def _internal_intervals(run: Path, names: list[str]) -> dict[str, list[float] | None]:
    """95% DeLong CI per label on the internal test split, from the saved predictions."""
    from ml.metrics.auc_ci import label_auc_intervals
    from ml.training.classifier import PREDICTIONS

    with np.load(run / PREDICTIONS, allow_pickle=False) as saved:
        return label_auc_intervals(saved["y_true"], saved["scores"], names)


def _test_on_dataset(run: Path, external: dict[str, Any]) -> dict[str, Any]:
    """External validation on a second site's whole dataset (checked when the job was made:
    ready, the same label names, the classifier's resolution). Its AUC interval and the
    internal one come from different images: they are shown side by side, never as a
    paired DeLong difference."""
    from ml.training.classifier import test_on_dataset

    tested = test_on_dataset(run, external["dataset_path"], device=str(_device()))
    if tested["dataset_hash"] != external["dataset_hash"]:
        # Re-imported since the job was queued: say so rather than mislabel the figure.
        tested["note"] = "The dataset changed after this job was queued."
    return {
        **tested,
        "dataset_id": external["dataset_id"],
        "dataset_name": external["dataset_name"],
    }


def _test_on_set(run: Path, set_id: int, trained_on: int | None) -> dict[str, Any]:
    """The classifier scored on a synthetic set with its labels (train-on-real, test-on-
    synthetic when the model is real-trained: do the images show what their labels say?)."""
    from ml.metrics.auc import label_aucs, macro_auc
    from ml.training.classifier import label_vector, load_classifier, predict

    model, meta = load_classifier(run, device=str(_device()))
    arrays = _load_set(set_id, meta["resolution"], meta["in_channels"])
    names = list(meta["label_names"])
    try:
        y = np.stack([label_vector(label, names) for label in arrays.labels]).astype(float)
    except ValueError as exc:
        return {"note": f"The set's labels do not match the dataset's: {exc}"}
    scores = predict(model, torch.from_numpy(arrays.images), meta["task"])
    aucs = label_aucs(y, scores, names)
    return {
        "auc": aucs,
        "macro_auc": macro_auc(aucs),
        "n": len(arrays.labels),
        # Scored on its own training images: an optimistic figure, shown as such.
        "trained_on_it": set_id == trained_on,
    }


def _extractor(params: dict[str, Any], device: torch.device):
    from ml.training.snapshot_fid import make_extractor

    if params["features"] == "domain":
        return make_extractor(str(_classifier_dir(params["classifier_job_id"]) / FEATURES), device)
    if params["features"] == "path":
        return make_extractor(params["features_path"], device)
    # Jobs queued before the option existed ran in the synthbench convention.
    return make_extractor("inception", device, resize=params.get("fid_resize") or "antialias")


def _real(params: dict[str, Any], split: str, limit: int) -> tuple[TrainingImages, torch.Tensor]:
    data = TrainingImages(params["dataset_path"], params["resolution"], split)
    images, _ = data.all(limit=limit)
    return data, images


def _compared(params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Real train and test images and the synthetic set, each at most `max_images`."""
    limit = int(params["max_images"])
    train_data, train = _real(params, "train", limit)
    _, test = _real(params, "test", limit)
    arrays = _load_set(params["image_set_id"], params["resolution"], train_data.channels, limit)
    return train_data, train, test, arrays


def _check_stop(stop: StopFn, where: str) -> None:
    if stop():
        from ml.progress import Stopped

        raise Stopped(f"cancelled {where}")


def evaluate_fidelity(
    params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn
) -> dict:
    from ml.metrics.features import extract, fid_convention
    from ml.metrics.fid import FID_RESAMPLES, compare

    device = _device()
    _, train, test, arrays = _compared(params)
    fake = torch.from_numpy(arrays.images)
    extractor = _extractor(params, device)
    total = len(train) + len(test) + len(fake)
    done = 0

    def feats(images: torch.Tensor, what: str) -> np.ndarray:
        nonlocal done
        _check_stop(stop, "while extracting features")
        start = done

        def tick(n: float, _total: float, _message: str) -> None:
            progress(start + n, total, f"features of {what}: {int(n)} images")

        result = extract(extractor, images, batch_size=FEATURE_BATCH, device=device, progress=tick)
        done += len(images)
        return result

    f_train, f_test, f_fake = (
        feats(train, "real train"),
        feats(test, "real test"),
        feats(fake, "synthetic"),
    )
    n_subset = max(2, min(1000, len(f_train), len(f_test), len(f_fake)))
    resamples = int(params.get("fid_resamples", FID_RESAMPLES))
    options = {
        "k": min(5, len(f_test) - 1, len(f_fake) - 1),
        "kid_subsets": 100,
        "kid_subset_size": n_subset,
        "fid_resamples": resamples,
        "device": device,
    }
    progress(total, total, f"FID, KID, PRDC ({resamples} bootstrap resamples per FID)")
    report = compare(f_train, f_fake, f_test, **options)
    # FID falls with sample size: also score as many fakes as there are test images, so the
    # figure beside the floor compares like with like.
    rng = np.random.default_rng(0)
    matched = f_fake[rng.choice(len(f_fake), size=min(len(f_fake), len(f_test)), replace=False)]
    matched_report = compare(f_train, matched, None, **options)
    np.savez_compressed(
        out / "features.npz", real_train=f_train, real_test=f_test, synthetic=f_fake
    )
    return {
        "features": params["features"],
        "extractor": getattr(extractor, "name", params["features"]),
        # Printed beside every FID: the preprocessing decides which FIDs it may be set beside.
        "fid_convention": fid_convention(extractor),
        "fid_resize": getattr(extractor, "resize", None),
        "fid_resamples": resamples,
        "fid_interval_method": "basic bootstrap over images",
        "image_set_id": params["image_set_id"],
        "resolution": params["resolution"],
        "synthetic_vs_train": asdict(report.fake_vs_train),
        "synthetic_matched_vs_train": asdict(matched_report.fake_vs_train),
        "floor_test_vs_train": asdict(report.floor) if report.floor else None,
        "n_train": len(f_train),
        "n_test": len(f_test),
        "n_synthetic": len(f_fake),
    }


def _space_result(report, train: TrainingImages, arrays, level: str) -> dict[str, Any]:
    order = report.risk_order()[:GALLERY_SIZE]
    gallery = []
    for i in order.tolist():
        gallery.append(
            {
                "image_id": arrays.image_ids[i],
                "label": arrays.labels[i],
                "dcr": float(report.dcr[i]),
                "nndr": float(report.nndr[i]),
                "flagged": bool(report.flagged[level][i]),
                "neighbours": [
                    {"row": int(train.rows[j]), "distance": float(d)}
                    for j, d in zip(
                        report.neighbour_indices[i].tolist(),
                        report.neighbour_distances[i].tolist(),
                        strict=True,
                    )
                ],
            }
        )
    return {"summary": report.summary(), "gallery": gallery}


def _step_progress(progress: ProgressFn, step: int, steps: int, what: str) -> ProgressFn:
    """Progress within step `step` (0-based) of `steps`."""

    def tick(done: float, total: float, message: str) -> None:
        progress(step + done / max(total, 1), steps, f"{what}: {message}")

    return tick


def _nearest_quality(
    report: Any,
    fake: torch.Tensor,
    train: torch.Tensor,
    tick: ProgressFn,
    stop: StopFn,
    max_images: int = QUALITY_MAX_IMAGES,
) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """PSNR, SSIM, MS-SSIM, MS-GMSD, MDSI and HaarPSI of synthetic images against their nearest
    real training image in the report's space: (summary over a seeded sample of at most
    `max_images`, the positions scored, per-image scores at those positions). The
    gallery's images are always scored, so the gallery can show theirs."""
    from ml.metrics.quality import per_image_quality, quality_report

    n = len(fake)
    nearest = torch.from_numpy(np.asarray(report.neighbour_indices[:, 0], dtype=np.int64))
    rng = np.random.default_rng(QUALITY_SEED)
    sample = np.sort(rng.choice(n, size=min(n, max_images), replace=False))
    extra = np.setdiff1d(report.risk_order()[:GALLERY_SIZE], sample)

    def on_batch(done: int, total: int) -> None:
        _check_stop(stop, "while scoring image quality")
        tick(done, total, f"image quality of {len(sample)} images against their nearest")

    def pairs(at: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(at)
        return train[nearest[index]], fake[index]

    device = _device()
    scored = quality_report(*pairs(sample), device=device, on_batch=on_batch)
    per_image = {m: np.asarray(v) for m, v in scored.per_image.items()}
    if len(extra):
        more = per_image_quality(*pairs(extra), device=device)
        per_image = {m: np.concatenate([v, np.asarray(more[m])]) for m, v in per_image.items()}
    positions = np.concatenate([sample, extra])
    summary = {
        **scored.summary,
        "n_synthetic": n,
        "sample_seed": QUALITY_SEED if len(sample) < n else None,
    }
    return summary, positions, per_image


def _with_quality(
    result: dict[str, Any], report: Any, positions: np.ndarray, per_image: dict[str, np.ndarray]
) -> None:
    """Each gallery image's scores against its nearest real image, beside its distances."""
    where = {int(p): i for i, p in enumerate(positions.tolist())}
    order = report.risk_order()[:GALLERY_SIZE].tolist()
    for item, position in zip(result["gallery"], order, strict=True):
        i = where[int(position)]
        item["quality"] = {m: float(v[i]) for m, v in per_image.items()}


def nearest_neighbours(
    params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn
) -> dict:
    from ml.metrics.features import TorchScriptFeatures, extract
    from ml.metrics.neighbours import (
        DEFAULT_ALPHA,
        memorisation_report,
        pixel_features,
        release_verdict,
    )

    device = _device()
    train_data, train, test, arrays = _compared(params)
    fake = torch.from_numpy(arrays.images)
    k = min(int(params["k"]), len(train))
    spaces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
        "pixel": (pixel_features(fake), pixel_features(train), pixel_features(test))
    }
    progress(1, 4, "pixel space")
    if params.get("classifier_job_id"):
        extractor = TorchScriptFeatures(
            _classifier_dir(params["classifier_job_id"]) / FEATURES, device=device
        )
        spaces["domain"] = tuple(
            extract(extractor, x, batch_size=FEATURE_BATCH, device=device).astype(np.float32)
            for x in (fake, train, test)
        )  # type: ignore[assignment]
    results: dict[str, Any] = {}
    verdicts: dict[str, Any] = {}
    alpha = float(params.get("alpha", DEFAULT_ALPHA))
    for n, (space, (f_fake, f_train, f_test)) in enumerate(spaces.items(), start=2):
        _check_stop(stop, "between feature spaces")
        report = memorisation_report(f_fake, f_train, f_test, k=k, space=space, device=str(device))
        results[space] = _space_result(report, train_data, arrays, params["level"])
        tick = _step_progress(progress, n - 1, len(spaces) + 1, f"{space} space")
        quality, scored_at, per_image = _nearest_quality(report, fake, train, tick, stop)
        results[space]["quality"] = quality
        _with_quality(results[space], report, scored_at, per_image)
        np.savez_compressed(
            out / f"quality_{space}.npz",
            image_ids=np.asarray(arrays.image_ids)[scored_at],
            neighbour_rows=train_data.rows[report.neighbour_indices[scored_at, 0]],
            **{f"quality_{m}": v for m, v in per_image.items()},
        )
        # Every space is gated and all must pass: Bonferroni keeps the set's false-fail rate
        # at alpha. Jobs queued before the gate was a test have no alpha: the default.
        verdict = release_verdict(
            report.summary(), alpha=alpha, level=params["level"], comparisons=len(spaces)
        )
        verdicts[space] = asdict(verdict)
        np.savez_compressed(
            out / f"neighbours_{space}.npz",
            image_ids=np.asarray(arrays.image_ids),
            dcr=report.dcr,
            nndr=report.nndr,
            neighbour_rows=train_data.rows[report.neighbour_indices],
            neighbour_distances=report.neighbour_distances,
            baseline_dcr=report.baseline_dcr,
        )
        progress(n, len(spaces) + 1, f"{space} space done")
    passes = all(v["passes"] for v in verdicts.values())
    (out / "gallery.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return {
        "image_set_id": params["image_set_id"],
        "resolution": params["resolution"],
        "k": k,
        "level": params["level"],
        "alpha": alpha,
        "spaces": {s: r["summary"] for s, r in results.items()},
        "verdicts": verdicts,
        "release": {
            "passes": passes,
            "reasons": [v["reason"] for v in verdicts.values()],
            "methods": next(iter(verdicts.values()))["methods"],
        },
        # Paired quality of each synthetic image against its nearest real training image.
        "quality": {s: r["quality"] for s, r in results.items()},
        "n_gallery": min(GALLERY_SIZE, len(arrays.image_ids)),
    }


def _targets(
    data: TrainingImages, meta: dict[str, Any], n: int
) -> tuple[np.ndarray, list[int], list[str]]:
    """Test positions to explain and the output each is explained for: its true class
    (multi-class) or its first positive label (multi-label; images with none are skipped)."""
    names = list(meta["label_names"])
    positions, targets = [], []
    for pos in range(len(data)):
        combo = data.classes.combos[int(data.labels[pos])]
        label_names = data.store.info.label_names
        positive = [
            label_names[i] for i, v in enumerate(combo) if v == 1 and label_names[i] in names
        ]
        if not positive:
            continue
        positions.append(pos)
        targets.append(names.index(positive[0]))
        if len(positions) == n:
            break
    return np.asarray(positions, dtype=np.int64), targets, [names[t] for t in targets]


def attribution(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    from ml.attribution import attribute, compare_maps, overlay_png, summarise_pair
    from ml.networks.classifier import cam_layer
    from ml.training.classifier import load_classifier

    device = _device()
    models = {}
    for role, job_id in params["classifiers"].items():
        model, meta = load_classifier(_classifier_dir(job_id), device=str(device))
        models[role] = (model, meta, job_id)
    first_meta = next(iter(models.values()))[1]
    data = TrainingImages(params["dataset_path"], first_meta["resolution"], "test")
    positions, targets, target_names = _targets(data, first_meta, params["n_images"])
    if not len(positions):
        raise ValueError("the test split has no image with a positive label to explain")
    images, _ = data.load(positions)
    folder = out / "overlays"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    maps: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, dict[str, list[float]]] = {}
    deltas: list[float] = []
    steps = len(models) * len(params["methods"])
    step = 0
    for role, (model, _meta, _job) in models.items():
        for method in params["methods"]:
            _check_stop(stop, "between attribution maps")
            result = attribute(
                model,
                images,
                torch.as_tensor(targets),
                method,
                n_steps=int(params["n_steps"]),
                layer=cam_layer(model) if method == "grad_cam" else None,
                device=str(device),
            )
            maps.setdefault(method, {})[role] = result.maps
            if result.delta is not None:
                deltas.extend(np.abs(result.delta).tolist())
            scores.setdefault(role, {})[method] = result.scores.tolist()
            step += 1
            progress(step, steps, f"{method} for the {role} classifier")
    items = []
    for i, pos in enumerate(positions.tolist()):
        item: dict[str, Any] = {
            "row": int(data.rows[pos]),
            "target": target_names[i],
            "files": {},
            "agreement": {},
        }
        for method, by_role in maps.items():
            # One scale per image and method, so the two models' maps are comparable.
            scale = max(float(np.percentile(np.abs(m[i]), 99)) for m in by_role.values()) or 1.0
            for role, m in by_role.items():
                name = f"{i:03d}_{method}_{role}.png"
                (folder / name).write_bytes(
                    overlay_png(images[i].numpy(), m[i], scale=scale, size=192)
                )
                item["files"].setdefault(method, {})[role] = f"overlays/{name}"
            roles = list(by_role)
            if len(roles) == 2:
                item["agreement"][method] = compare_maps(by_role[roles[0]][i], by_role[roles[1]][i])
        items.append(item)
    summary = {}
    for method, by_role in maps.items():
        roles = list(by_role)
        if len(roles) == 2:
            summary[method] = summarise_pair(by_role[roles[0]], by_role[roles[1]])
    return {
        "classifiers": params["classifiers"],
        "methods": params["methods"],
        "items": items,
        "agreement": summary,
        # Completeness check of integrated gradients: attributions sum to the logit change.
        "ig_max_abs_delta": max(deltas) if deltas else None,
    }
