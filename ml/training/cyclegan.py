"""Train a CycleGAN between two prepared datasets, and translate a dataset with it.

    from ml.training.cyclegan import CycleGanConfig, train_cyclegan, translate_images
    train_cyclegan("datasets/drr", "datasets/cxr", "runs/drr2cxr", CycleGanConfig(resolution=128))
    translate_images("runs/drr2cxr/checkpoint.pt", "datasets/drr", "sets/drr-as-cxr", split="test")

Unpaired translation A -> B (Zhu et al. 2017): two ResNet generators, two PatchGANs, least-
squares adversarial losses (Mao et al. 2017), cycle consistency weighted lambda_cycle = 10 and an
identity loss weighted lambda_identity * lambda_cycle = 5, as the paper's code does. The
discriminators see a history of 50 generated images (Shrivastava et al. 2017). Adam with
lr 2e-4, betas (0.5, 0.999); the rate is constant for the first half and decays linearly to zero
over the second (the paper: 100 + 100 epochs).

Bookkeeping follows `ml.training.gan`: time in images of domain A shown (kimg; each step also
shows as many B images), a tick every `tick_kimg` into `metrics.jsonl`, every `snapshot_ticks`
a grid (rows: real A, A->B, A->B->A, real B, B->A, B->A->B on fixed evaluation images), the
cycle reconstruction error on the evaluation split (L1, PSNR, SSIM) into `snapshots.jsonl`,
and an atomic `checkpoint.pt` holding every random state, the optimisers and both image pools,
so a run stopped at any moment and resumed ends with the same weights as one never stopped.
"""

from __future__ import annotations

import csv
import hashlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ml import run_folder
from ml.data.store import open_dataset
from ml.data.training_images import TrainingImages
from ml.networks.cyclegan import (
    CycleGanNetworks,
    ImagePool,
    build_cyclegan,
    discriminator_loss,
    generator_losses,
)
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress
from ml.training import checkpoint as ckpt
from ml.training import run_log, ticks
from ml.training.cyclegan_config import CycleGanConfig as CycleGanConfig
from ml.training.grid import save_grid, to_uint8

CHECKPOINT = run_folder.CHECKPOINT
MANIFEST = run_folder.MANIFEST
DIRECTIONS = ("a2b", "b2a")
EVAL_BATCH = 16


@dataclass
class CycleGanResult:
    kimg: float
    ticks: int
    snapshots: int
    images_per_second: float
    cycle: dict[str, float]  # the last snapshot's reconstruction metrics
    dataset_a_hash: str
    dataset_b_hash: str
    checkpoint: str
    out: str


@dataclass(frozen=True)
class TranslateResult:
    n_images: int
    per_class: dict[str, int]
    direction: str
    group: str
    kimg: float
    cycle: dict[str, float]  # source vs its round trip, over the translated images
    checkpoint_sha256: str
    folder: str


def reconstruction_metrics(real: torch.Tensor, rebuilt: torch.Tensor) -> dict[str, list[float]]:
    """Per-image L1 (fraction of full range) and the paired quality metrics of
    `ml.metrics.quality` (PSNR, SSIM, MS-SSIM, MS-GMSD, MDSI, HaarPSI where the size allows)
    between images in [-1, 1]."""
    from ml.metrics.quality import per_image_quality  # piq: loaded only where needed

    x = real.detach().float().clamp(-1, 1).cpu()
    y = rebuilt.detach().float().clamp(-1, 1).cpu()
    l1 = (x - y).abs().div(2).flatten(1).mean(1)
    return {"l1": l1.tolist(), **per_image_quality(x, y)}


def _round_trip(
    forward: torch.nn.Module, back: torch.nn.Module, images: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(translated, translated back), on the CPU; in chunks so 64 images at 256 px fit anywhere."""
    moved, rebuilt = [], []
    with torch.no_grad():
        for chunk in images.split(EVAL_BATCH):
            there = forward(chunk.to(device))
            moved.append(there.cpu())
            rebuilt.append(back(there).cpu())
    return torch.cat(moved), torch.cat(rebuilt)


def _mean_metrics(values: dict[str, list[float]], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": round(float(np.mean(v)), 6) for k, v in values.items()}


class _Run:
    """Everything a checkpoint must restore, in one place."""

    def __init__(self, config: CycleGanConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.nets = build_cyclegan(
            config.resolution,
            base_channels=config.base_channels,
            n_blocks=config.n_blocks,
            d_layers=config.d_layers,
        )
        for name in ("g_ab", "g_ba", "d_a", "d_b"):
            setattr(self.nets, name, getattr(self.nets, name).to(device))
        betas = (config.beta1, config.beta2)
        g_params = [p for g in self.nets.generators() for p in g.parameters()]
        d_params = [p for d in self.nets.discriminators() for p in d.parameters()]
        self.opt_g = torch.optim.Adam(g_params, lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(d_params, lr=config.lr, betas=betas)
        self.pool_a, self.pool_b = ImagePool(config.pool_size), ImagePool(config.pool_size)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.nimg = self.tick = self.snapshot = 0
        self.last_cycle: dict[str, float] = {}

    def lr(self) -> float:
        total = self.config.kimg * 1000.0
        start = self.config.decay_start * total
        if self.nimg <= start or total <= start:
            return self.config.lr
        return self.config.lr * max(0.0, (total - self.nimg) / (total - start))

    def state(self, hashes: tuple[str, str], class_names: list[str]) -> dict[str, Any]:
        nets = self.nets
        return {
            "config": asdict(self.config),
            "dataset_hashes": list(hashes),
            "class_names_a": class_names,
            "n_blocks": nets.n_blocks,
            "networks": {k: getattr(nets, k).state_dict() for k in ("g_ab", "g_ba", "d_a", "d_b")},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pool_a": self.pool_a.state_dict(),
            "pool_b": self.pool_b.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "counters": {"nimg": self.nimg, "tick": self.tick, "snapshot": self.snapshot},
            "last_cycle": dict(self.last_cycle),
        }

    def restore(self, state: dict[str, Any]) -> None:
        for name, weights in state["networks"].items():
            getattr(self.nets, name).load_state_dict(weights)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)
        # The checkpoint was mapped to the run's device; random states must be CPU tensors.
        self.rng.set_state(state["rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        counters = state["counters"]
        self.nimg, self.tick = counters["nimg"], counters["tick"]
        self.snapshot = counters["snapshot"]
        self.last_cycle = dict(state["last_cycle"])


def _batch(run: _Run, data: TrainingImages) -> torch.Tensor:
    images, _ = data.sample(run.config.batch_size, run.rng)
    if run.config.mirror:
        flip = torch.rand(images.shape[0], generator=run.rng) < 0.5
        images[flip] = images[flip].flip(-1)
    return images.to(run.device, non_blocking=True)


def _train_step(run: _Run, data_a: TrainingImages, data_b: TrainingImages) -> dict[str, float]:
    nets, lr = run.nets, run.lr()
    for opt in (run.opt_g, run.opt_d):
        for group in opt.param_groups:
            group["lr"] = lr
    real_a, real_b = _batch(run, data_a), _batch(run, data_b)
    # D's weights get no gradient in the generator step: computing it would be wasted work.
    for d in nets.discriminators():
        d.requires_grad_(False)
    loss_g, stats, fake_b, fake_a = generator_losses(
        nets,
        real_a,
        real_b,
        lambda_cycle=run.config.lambda_cycle,
        lambda_identity=run.config.lambda_identity,
    )
    run.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    run.opt_g.step()
    for d in nets.discriminators():
        d.requires_grad_(True)
    loss_d_a = discriminator_loss(nets.d_a, real_a, run.pool_a.query(fake_a, run.rng))
    loss_d_b = discriminator_loss(nets.d_b, real_b, run.pool_b.query(fake_b, run.rng))
    run.opt_d.zero_grad(set_to_none=True)
    (loss_d_a + loss_d_b).backward()
    run.opt_d.step()
    return stats | {
        "loss_d_a": float(loss_d_a.detach()),
        "loss_d_b": float(loss_d_b.detach()),
        "lr": lr,
    }


def _eval_images(dataset: Path | str, config: CycleGanConfig) -> tuple[torch.Tensor, str]:
    """The first `eval_images` of the evaluation split: fixed, so snapshots compare."""
    split = config.eval_split
    if open_dataset(dataset).indices(split).size == 0:
        split = config.split  # no such split: judge on training images rather than not at all
    images, _ = TrainingImages(dataset, config.resolution, split).all(config.eval_images)
    return images, split


def _without_device(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "device"}


def train_cyclegan(
    dataset_a: Path | str,
    dataset_b: Path | str,
    out: Path | str,
    config: CycleGanConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> CycleGanResult:
    config.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    data_a = TrainingImages(dataset_a, config.resolution, config.split)
    data_b = TrainingImages(dataset_b, config.resolution, config.split)
    hashes = (data_a.store.info.content_hash, data_b.store.info.content_hash)
    run = _Run(config, device)
    metrics_log, snapshots_log = out / run_folder.METRICS, out / run_folder.SNAPSHOTS
    if (out / CHECKPOINT).exists():
        state = ckpt.load(out / CHECKPOINT, device)
        # The device may differ (a retry on another worker): it changes speed, not the run.
        same = _without_device(state["config"]) == _without_device(asdict(config))
        if tuple(state["dataset_hashes"]) != hashes or not same:
            raise ValueError(f"{out} holds a run with other datasets or config; use a new folder")
        run.restore(state)
        for log in (metrics_log, snapshots_log):
            run_log.truncate_after(log, run.nimg / 1000.0)
    else:
        for log in (metrics_log, snapshots_log):
            log.unlink(missing_ok=True)
    eval_a, split_a = _eval_images(dataset_a, config)
    eval_b, split_b = _eval_images(dataset_b, config)
    _write_run_info(out, config, run, data_a, data_b, hashes, (split_a, split_b))
    schedule = ticks.Schedule(
        config.kimg, config.batch_size, config.tick_kimg, config.snapshot_ticks
    )
    total = schedule.total
    started, started_nimg = time.perf_counter(), run.nimg

    def write_tick(record: dict[str, Any]) -> None:
        run_log.append(metrics_log, record)
        progress(run.nimg, total, _tick_message(record))

    def snapshot() -> bool:
        _snapshot(run, out, eval_a, eval_b, hashes, list(data_a.class_names), should_stop)
        return False  # no early stopping: a CycleGAN has no FID to stop on

    ticks.run_ticks(
        run,
        schedule,
        lambda: _train_step(run, data_a, data_b),
        should_stop=should_stop,
        # A lost job must not log one more line.
        stop_before_write=lambda: run_log.stop_before_write(should_stop),
        write_tick=write_tick,
        snapshot=snapshot,
        kimg_decimals=3,
    )
    elapsed = time.perf_counter() - started
    return CycleGanResult(
        kimg=run.nimg / 1000.0,
        ticks=run.tick,
        snapshots=run.snapshot,
        images_per_second=(run.nimg - started_nimg) / max(elapsed, 1e-9),
        cycle=dict(run.last_cycle),
        dataset_a_hash=hashes[0],
        dataset_b_hash=hashes[1],
        checkpoint=str(out / CHECKPOINT),
        out=str(out),
    )


def _tick_message(record: dict[str, Any]) -> str:
    return (
        f"kimg {record['kimg']:.3f}, loss_g {record['loss_g']:.3f}, "
        f"loss_d {record['loss_d_a'] + record['loss_d_b']:.3f}, "
        f"{record['images_per_second']:.0f} img/s"
    )


def _cycle_metrics(
    nets: CycleGanNetworks, eval_a: torch.Tensor, eval_b: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Mean reconstruction metrics A -> B -> A (`cycle_a_*`) and B -> A -> B (`cycle_b_*`)."""
    _, rec_a = _round_trip(nets.g_ab, nets.g_ba, eval_a, device)
    _, rec_b = _round_trip(nets.g_ba, nets.g_ab, eval_b, device)
    metrics = _mean_metrics(reconstruction_metrics(eval_a, rec_a), "cycle_a")
    return metrics | _mean_metrics(reconstruction_metrics(eval_b, rec_b), "cycle_b")


def _snapshot(
    run: _Run,
    out: Path,
    eval_a: torch.Tensor,
    eval_b: torch.Tensor,
    hashes: tuple[str, str],
    class_names: list[str],
    should_stop: StopFn = never_stop,
) -> None:
    run.snapshot += 1
    n = min(run.config.grid_images, len(eval_a), len(eval_b))
    real_a, real_b = eval_a[:n], eval_b[:n]
    fake_b, rec_a = _round_trip(run.nets.g_ab, run.nets.g_ba, real_a, run.device)
    fake_a, rec_b = _round_trip(run.nets.g_ba, run.nets.g_ab, real_b, run.device)
    rows = [real_a, fake_b, rec_a, real_b, fake_a, rec_b]
    if run_log.stop_before_write(should_stop):
        raise Stopped(f"stopped at {run.nimg / 1000:.3f} kimg")
    grid = save_grid(torch.cat(rows), len(rows), out / "grids" / f"grid-{run.snapshot:04d}.png")
    run.last_cycle = _cycle_metrics(run.nets, eval_a, eval_b, run.device)
    record = {"snapshot": run.snapshot, "kimg": round(run.nimg / 1000.0, 6), "grid": grid.name}
    record |= {"n_eval_a": len(eval_a), "n_eval_b": len(eval_b), **run.last_cycle}
    ckpt.save_atomic(run.state(hashes, class_names), out / CHECKPOINT)
    run_log.append(out / run_folder.SNAPSHOTS, record)


def _write_run_info(
    out: Path,
    config: CycleGanConfig,
    run: _Run,
    data_a: TrainingImages,
    data_b: TrainingImages,
    hashes: tuple[str, str],
    eval_splits: tuple[str, str],
) -> None:
    from ml.provenance import code_version

    info = {
        "config": asdict(config),
        "dataset_a_hash": hashes[0],
        "dataset_b_hash": hashes[1],
        "class_names_a": list(data_a.class_names),
        "class_names_b": list(data_b.class_names),
        "n_train_a": len(data_a),
        "n_train_b": len(data_b),
        "eval_splits": list(eval_splits),
        "n_blocks": run.nets.n_blocks,
        "patch_receptive_field": run.nets.receptive_field,
        "loss": "lsgan",
        "code_version": code_version(),
        "torch": torch.__version__,
        "parameters": {
            "generators": _n_parameters(run.nets.generators()),
            "discriminators": _n_parameters(run.nets.discriminators()),
        },
    }
    run_folder.write_run_info(out, info)


def _n_parameters(nets: list[torch.nn.Module]) -> int:
    return sum(p.numel() for net in nets for p in net.parameters())


def translate_images(
    checkpoint: Path | str,
    source_dataset: Path | str,
    out_dir: Path | str,
    *,
    direction: str = "a2b",
    split: str | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> TranslateResult:
    """Translate every image of `split` (None: all) into `out_dir` as PNGs + manifest.csv.

    The manifest has the image-set importer's columns (file, source = "synthetic", label = the
    source image's class, group = "cyclegan-<direction>@<kimg>kimg") plus `source_key`, the
    source entry's key (a salted hash, no identifier), so each output pairs with its input.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    dev = torch.device(device)
    state = ckpt.load(checkpoint, dev)
    config = state["config"]
    nets = build_cyclegan(
        config["resolution"],
        base_channels=config["base_channels"],
        n_blocks=state["n_blocks"],
        d_layers=config["d_layers"],
    )
    forward, back = (nets.g_ab, nets.g_ba) if direction == "a2b" else (nets.g_ba, nets.g_ab)
    forward.load_state_dict(state["networks"][f"g_{direction[0]}{direction[2]}"])
    back.load_state_dict(state["networks"][f"g_{direction[2]}{direction[0]}"])
    forward, back = forward.to(dev).eval(), back.to(dev).eval()
    data = TrainingImages(source_dataset, config["resolution"], split)
    kimg = state["counters"]["nimg"] / 1000.0
    group = f"cyclegan-{direction}@{kimg:g}kimg"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    sums: dict[str, list[float]] = {}
    per_class: dict[str, int] = {}
    total = len(data)
    for start in range(0, total, batch_size):
        if should_stop():
            raise Stopped(f"translation stopped after {start} of {total} images")
        positions = np.arange(start, min(start + batch_size, total))
        images, labels = data.load(positions)
        moved, rebuilt = _round_trip(forward, back, images, dev)
        for key, values in reconstruction_metrics(images, rebuilt).items():
            sums.setdefault(key, []).extend(values)
        for pos, label, pixels in zip(positions, labels.tolist(), to_uint8(moved), strict=True):
            name = f"{direction}-{int(pos):06d}.png"
            Image.fromarray(pixels).save(out_dir / name, format="PNG")
            cls = data.class_names[label]
            per_class[cls] = per_class.get(cls, 0) + 1
            key = data.store.entries[int(data.rows[pos])].key
            row = dict(file=name, source="synthetic", label=cls, group=group, source_key=key)
            rows.append(row)
        progress(len(rows), total, f"{len(rows)}/{total} images translated")
    with checkpoint.open("rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    with (out_dir / MANIFEST).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "source", "label", "group", "source_key"])
        writer.writeheader()
        writer.writerows(rows)
    return TranslateResult(
        n_images=len(rows),
        per_class=per_class,
        direction=direction,
        group=group,
        kimg=kimg,
        cycle=_mean_metrics(sums, "cycle"),
        checkpoint_sha256=sha,
        folder=str(out_dir),
    )
