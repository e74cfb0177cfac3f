"""Train a conditional GAN on a prepared dataset: ticks, snapshots, FID, resume, early stop.

    from ml.training.gan import GanConfig, train_gan
    result = train_gan("datasets/7", "runs/dcgan-32", GanConfig(arch="dcgan", resolution=32))

Time is counted in images shown (kimg), as in the progressive GAN and StyleGAN papers: a
*tick* every `tick_kimg` logs losses and speed to `metrics.jsonl`; every `snapshot_ticks`
ticks a *snapshot* saves a fixed-latent sample grid, computes FID (when asked) into
`snapshots.jsonl` and writes `checkpoint.pt` atomically. Started again on the same folder the
run resumes from that checkpoint, with every random state restored, so a run killed at any
moment and resumed ends with the same weights as one never interrupted (on the same device).

Early stopping follows seed 000: stop when FID has not improved for `fid_patience`
snapshots; the checkpoint of the best FID is kept as `best.pt`.

With `dp_noise_multiplier` set the discriminator is trained with DP-SGD and the privacy spent
(epsilon at `dp_delta`) is logged at every tick (`ml.training.privacy`). Launched by torchrun
the loop trains data-parallel over the processes (`ml.training.distributed`, entry point
`python -m ml.training.gan_ddp`); `batch_size` stays the global batch.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml import run_folder
from ml.data.training_images import TrainingImages
from ml.generators.one_class import one_class
from ml.networks.gan import ARCHS, build_gan
from ml.networks.gan.base import GanModels
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress
from ml.training import checkpoint as ckpt
from ml.training import distributed as ddp
from ml.training import privacy, run_log, ticks
from ml.training.augment import AdaptiveAugment, diff_augment
from ml.training.domain_loss import DomainClassifier, load_domain_classifier
from ml.training.early_stopping import FidPatience
from ml.training.ema import ema_beta, make_ema, update_ema
from ml.training.gan_config import BEST, CHECKPOINT, GanConfig, kimg_to_full_resolution
from ml.training.gan_losses import discriminator_loss, generator_loss
from ml.training.grid import save_grid
from ml.training.snapshot_fid import SnapshotFid

GRID_PER_CLASS = 8
EMA_RAMPUP = 0.05


@dataclass
class GanResult:
    kimg: float
    ticks: int
    snapshots: int
    best_fid: float | None
    best_kimg: float | None
    stopped_early: bool
    images_per_second: float
    class_names: list[str]
    checkpoint: str
    out: str
    epsilon: float | None = None  # DP runs: privacy spent, at `delta`
    delta: float | None = None
    accountant: str | None = None  # DP runs: "prv" or "rdp", the one that gave `epsilon`
    epsilon_rdp: float | None = None  # DP runs: the RDP accountant's bound, a cross-check
    per_class: list[dict[str, Any]] | None = None  # one GAN per class: each class's run


class _Run:
    """Everything a checkpoint must restore, in one place.

    `g` and `d` are the plain networks (state dicts, EMA, snapshots, G's step through D);
    `train` is the same record with the wrappers that train them: DDP under torchrun, Opacus
    for a private D.
    """

    def __init__(
        self,
        data: TrainingImages,
        config: GanConfig,
        device: torch.device,
        dist: ddp.Dist | None = None,  # None: one process (bench/gan_throughput.py uses that)
    ) -> None:
        self.config = config
        self.device = device
        self.dist = dist = dist or ddp.Dist(device=device)
        options = dict(config.arch_options)
        if "batch" in inspect.signature(ARCHS[config.arch]).parameters:
            # StyleGAN2's R1 weight follows the batch size (gamma = 0.0002 R^2 / batch).
            options.setdefault("batch", config.batch_size)
        if data.channels != 1:  # only then: single-channel builds stay exactly as they were
            options["channels"] = data.channels
        self.models: GanModels = build_gan(
            config.arch, config.resolution, data.n_classes, **options
        )
        if config.dp_noise_multiplier is not None:  # before the optimiser: BN -> GroupNorm
            self.models.discriminator = privacy.private_discriminator(self.models, config.arch)
        self.g = self.models.generator.to(device)
        self.d = self.models.discriminator.to(device)
        if config.channels_last:
            self.g = self.g.to(memory_format=torch.channels_last)
            self.d = self.d.to(memory_format=torch.channels_last)
        lr_g, lr_d, beta1, beta2 = self.models.optimizer
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr_g, betas=(beta1, beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr_d, betas=(beta1, beta2))
        self.g_ema = make_ema(self.g) if config.ema_kimg else None
        self.dp = privacy.PrivateDiscriminator.of(
            config, self.models, self.d, self.opt_d, len(data)
        )
        self.domain = _domain_classifier(config, data, device)
        d_train: torch.nn.Module = self.d
        if self.dp is not None:  # Opacus trains D; its optimiser clips, noises and accounts
            d_train, self.opt_d = self.dp.module, self.dp.optimizer
        grows = self.models.schedule is not None
        self.train = replace(
            self.models,
            generator=ddp.wrap(self.g, dist, find_unused=grows),
            discriminator=ddp.wrap(d_train, dist, find_unused=grows),
        )
        self.ada = (
            AdaptiveAugment(target=config.ada_target, ada_kimg=config.ada_kimg)
            if config.augment == "ada"
            else None
        )
        self.rng = torch.Generator().manual_seed(config.seed)  # the same on every rank
        ddp.seed_ranks(dist, config.seed)  # after the networks: identical initial weights
        self.patience = FidPatience(config.fid_patience, start_kimg=kimg_to_full_resolution(config))
        self.nimg = 0
        self.tick = 0
        self.snapshot = 0
        self.d_step = 0

    def sampler(self) -> torch.nn.Module:
        return self.g_ema if self.g_ema is not None else self.g

    def state(self, data: TrainingImages, dataset_hash: str) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "class_names": list(data.class_names),
            "dataset_hash": dataset_hash,
            "z_dim": self.models.z_dim,
            # Only when not 1 (as the build options): sampling rebuilds the networks from it.
            **({"channels": data.channels} if data.channels != 1 else {}),
            "generator": self.g.state_dict(),
            "discriminator": self.d.state_dict(),
            "generator_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "ada": self.ada.state_dict() if self.ada is not None else None,
            "privacy": self.dp.state_dict() if self.dp is not None else None,
            "patience": self.patience.state_dict(),
            "rng": self.rng.get_state(),
            **ddp.torch_rng_states(self.dist),  # a collective: every rank's generator
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "counters": {
                "nimg": self.nimg,
                "tick": self.tick,
                "snapshot": self.snapshot,
                "d_step": self.d_step,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        if self.g_ema is not None and state["generator_ema"] is not None:
            self.g_ema.load_state_dict(state["generator_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ada is not None and state["ada"] is not None:
            self.ada.load_state_dict(state["ada"])
        if self.dp is not None:
            # The accountant's history: epsilon continues from the steps already taken.
            self.dp.load_state_dict(state["privacy"])
        self.patience = FidPatience.from_state(state["patience"])
        self.rng.set_state(state["rng"].cpu())  # loaded onto the training device
        ddp.restore_torch_rng(state, self.dist, self.config.seed)
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        counters = state["counters"]
        self.nimg, self.tick = counters["nimg"], counters["tick"]
        self.snapshot, self.d_step = counters["snapshot"], counters["d_step"]
        self.schedule()

    def schedule(self) -> None:
        if self.models.schedule is not None:
            self.models.schedule(self.nimg / 1000.0)
            if self.g_ema is not None:
                _copy_schedule(self.g, self.g_ema)


def _domain_classifier(
    config: GanConfig, data: TrainingImages, device: torch.device
) -> DomainClassifier | None:
    if not config.domain_classifier:
        return None
    return load_domain_classifier(
        config.domain_classifier,
        data.store.info.label_names,
        data.class_names,
        data.classes.combos,
        data.channels,
        config.resolution,
        device,
    )


def _copy_schedule(source: torch.nn.Module, target: torch.nn.Module) -> None:
    # Growing networks keep their level / fade-in as plain attributes; the average generator
    # must draw at the same level as the one it averages.
    for name in ("level", "alpha"):
        if hasattr(source, name):
            setattr(target, name, getattr(source, name))


def _augmenter(run: _Run) -> Callable[[torch.Tensor], torch.Tensor]:
    if run.config.augment == "diffaugment":
        return diff_augment
    if run.ada is not None:
        return run.ada
    return lambda x: x


def _draw(run: _Run, data: TrainingImages) -> tuple[torch.Tensor, ...]:
    """This rank's reals and labels and its fakes' latents and labels, for one D step: the
    rank's slice of a global batch (fakes take the reals' labels), or for a private run a
    Poisson sample of reals and fakes from public inputs only."""
    cfg, z_dim = run.config, run.models.z_dim
    if run.dp is not None:
        batch = run.dp.draw(data, cfg.batch_size, z_dim, run.models.n_classes, cfg.mirror, run.rng)
    else:
        real, labels, z = ddp.draw(data, cfg.batch_size, z_dim, cfg.mirror, run.rng, run.dist)
        batch = real, labels, z, labels
    return tuple(t.to(run.device, non_blocking=True) for t in batch)


def _train_step(run: _Run, data: TrainingImages, augment: Callable) -> dict[str, float]:
    cfg, dev, models, train = run.config, run.device, run.models, run.train
    stats: dict[str, float] = {}
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.amp)
    for i in range(models.d_steps):
        real, labels, z, fake_labels = _draw(run, data)
        last = i == models.d_steps - 1
        # The last critic step's fakes are kept with their graph and reused for the generator
        # step: one generator forward per iteration, as in the DCGAN reference loop.
        with amp, torch.set_grad_enabled(last):
            fake = train.generator(z, fake_labels)
        run.d.requires_grad_(True)
        if run.dp is not None:
            with amp:
                d_stats = run.dp.step(
                    models,
                    augment(real),
                    labels,
                    augment(fake.detach()),
                    fake_labels,
                    step=run.d_step,
                )
        else:
            with amp:
                loss_d, d_stats = discriminator_loss(
                    train, augment(real), augment(fake.detach()), labels, step=run.d_step
                )
            run.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            run.opt_d.step()
        run.d_step += 1
        if run.ada is not None and "d_real_sign" in d_stats:
            # Every rank must move p alike: r_t over the global batch.
            run.ada.update(ddp.mean_float(d_stats["d_real_sign"], run.dist), cfg.batch_size)
        stats.update(d_stats)
    # D's weights get no gradient in the generator step: computing it would be wasted work.
    # `models` holds the plain D (DDP would wait for D gradients that never come; Opacus'
    # hooks are switched off: no per-sample gradients are wanted here).
    run.d.requires_grad_(False)
    with run.dp.hooks_off() if run.dp is not None else nullcontext():
        with amp:
            loss_g, g_stats = generator_loss(models, augment(fake), fake_labels)
            if run.domain is not None:
                # Scored before augmentation: the classifier judges the image G produced.
                domain = run.domain.loss(fake, fake_labels)
                loss_g = loss_g + cfg.domain_lambda * domain
                g_stats = {**g_stats, "domain_ce": domain.item(), "loss_g": loss_g.item()}
        run.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    run.opt_g.step()
    run.d.requires_grad_(True)
    if run.g_ema is not None:
        # Ramp-up as in StyleGAN2-ADA: early on the half-life is 5% of the images seen, so the
        # average does not drag the untrained initial weights along for thousands of images.
        half_life = min(cfg.ema_kimg or 1.0, run.nimg * EMA_RAMPUP / 1000.0)
        update_ema(run.g_ema, run.g, ema_beta(cfg.batch_size, half_life))
    stats.update(g_stats)
    return stats


def _grid_latents(run: _Run, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(run.config.seed + 1_000_003)
    z = torch.randn(GRID_PER_CLASS, run.models.z_dim, generator=gen)
    z = z.repeat(n_classes, 1)  # the same latents in every row: rows differ by class only
    labels = torch.arange(n_classes).repeat_interleave(GRID_PER_CLASS)
    return z.to(run.device), labels.to(run.device)


def train_gan(
    dataset: Path | str,
    out: Path | str,
    config: GanConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> GanResult:
    """Train (or resume) the run in `out`. Under torchrun every process calls this with the
    same arguments; only rank 0 writes to `out`, and every rank returns the same result."""
    config.check()
    if config.per_class:  # seed 002: a generator per class, each a run of this function
        from ml.generators.per_class import train_per_class

        return train_per_class(dataset, out, config, progress=progress, should_stop=should_stop)
    private = config.dp_noise_multiplier is not None
    with ddp.session(config.device, config.batch_size, private=private) as dist:
        # The run (its DDP wrappers hold the process group) lives in _train's frame, gone
        # before the session's teardown destroys the group.
        return _train(Path(dataset), Path(out), config, dist, progress, should_stop)


def _train(
    dataset: Path,
    out: Path,
    config: GanConfig,
    dist: ddp.Dist,
    progress: ProgressFn,
    should_stop: StopFn,
) -> GanResult:
    main, device = dist.main, dist.device
    # Rank 0 looks before it can write anything; every rank then loads the same file.
    resume = ddp.broadcast((out / CHECKPOINT).exists(), dist)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    data = TrainingImages(dataset, config.resolution, config.split)
    if config.only_class is not None:  # one sub-run of a per-class run
        data = one_class(data, config.only_class)
    dataset_hash = data.store.info.content_hash
    run = _Run(data, config, device, dist)
    logs = (out / run_folder.METRICS, out / run_folder.SNAPSHOTS) if main else ()
    if _stop_before_write(should_stop, dist):  # resuming rewrites the logs
        raise Stopped("stopped before the run started")
    if resume:
        state = ckpt.load(out / CHECKPOINT, device)
        if state["dataset_hash"] != dataset_hash or not _same_config(state["config"], config):
            raise ValueError(f"{out} holds a run with another dataset or config; use a new folder")
        run.restore(state)
        for log in logs:
            run_log.truncate_after(log, run.nimg / 1000.0)
    else:
        for log in logs:
            log.unlink(missing_ok=True)
        run.schedule()
    fid = None
    if main:
        _write_run_info(out, config, data, dataset_hash, run)
        fid = SnapshotFid.create(config, data, out, device) if config.fid_features else None
    ddp.barrier(dist)
    grid_z, grid_labels = _grid_latents(run, data.n_classes)
    augment = _augmenter(run)
    started, started_nimg = time.perf_counter(), run.nimg

    def step() -> dict[str, float]:
        run.schedule()
        return _train_step(run, data, augment)

    def write_tick(record: dict[str, Any]) -> None:
        if run.ada is not None:
            record["augment_p"] = round(run.ada.p, 6)
        if run.dp is not None:
            record.update(run.dp.record())  # epsilon, the accountant that gave it, RDP's
        if main:
            run_log.append(out / run_folder.METRICS, record)
            progress(run.nimg, total, _tick_message(record))

    schedule = ticks.Schedule(
        config.kimg, config.batch_size, config.tick_kimg, config.snapshot_ticks
    )
    total = schedule.total
    stopped_early = ticks.run_ticks(
        run,
        schedule,
        step,
        should_stop=lambda: bool(ddp.broadcast(should_stop(), dist)),  # all ranks leave
        stop_before_write=lambda: _stop_before_write(should_stop, dist),
        write_tick=write_tick,
        snapshot=lambda: _snapshot(
            run, data, out, fid, grid_z, grid_labels, dataset_hash, should_stop
        ),
        # Each rank's statistics are over its slice; the global batch's are the mean.
        reduce=lambda sums: ddp.mean_floats(sums, dist),
    )
    elapsed = time.perf_counter() - started
    return GanResult(
        kimg=run.nimg / 1000.0,
        ticks=run.tick,
        snapshots=run.snapshot,
        best_fid=run.patience.best,
        best_kimg=run.patience.best_kimg,
        stopped_early=stopped_early,
        images_per_second=(run.nimg - started_nimg) / max(elapsed, 1e-9),
        class_names=list(data.class_names),
        checkpoint=str(out / CHECKPOINT),
        out=str(out),
        epsilon=run.dp.epsilon() if run.dp is not None else None,
        delta=run.dp.delta if run.dp is not None else None,
        accountant=run.dp.spent().accountant if run.dp is not None else None,
        epsilon_rdp=run.dp.spent().epsilon_rdp if run.dp is not None else None,
    )


def _stop_before_write(should_stop: StopFn, dist: ddp.Dist) -> bool:
    """Rank 0's unthrottled answer on every rank, right before rank 0 writes to the run."""
    return bool(ddp.broadcast(run_log.stop_before_write(should_stop) if dist.main else False, dist))


def _same_config(saved: dict[str, Any], config: GanConfig) -> bool:
    # Fields added since the checkpoint was written take their defaults: old runs resume.
    defaults = {f.name: f.default for f in fields(GanConfig) if f.name not in saved}
    return {**saved, **defaults} == asdict(config)


def _tick_message(record: dict[str, Any]) -> str:
    parts = [f"kimg {record['kimg']:.2f}"]
    for key in ("loss_d", "loss_g", "epsilon"):
        if key in record:
            parts.append(f"{key} {record[key]:.3f}")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    return ", ".join(parts)


def _snapshot(
    run: _Run,
    data: TrainingImages,
    out: Path,
    fid: SnapshotFid | None,
    grid_z: torch.Tensor,
    grid_labels: torch.Tensor,
    dataset_hash: str,
    should_stop: StopFn = never_stop,
) -> bool:
    """Grid, FID and checkpoint on rank 0; every rank returns rank 0's early-stop decision."""
    run.snapshot += 1
    kimg = run.nimg / 1000.0
    state = run.state(data, dataset_hash)  # a collective: every rank takes part
    stop = improved = False
    record: dict[str, Any] = {}
    images = None
    if run.dist.main:  # sample and score first, write nothing yet
        sampler = run.sampler()  # a plain module: a DDP forward on one rank would hang
        # StyleGAN2 draws its per-pixel noise from torch's generator: forked, so the grid and
        # FID leave training on the stream `state` holds (a resumed run must see the same).
        with _forked_rng(run.device), torch.no_grad():
            images = sampler(grid_z, grid_labels)
        record = {"snapshot": run.snapshot, "kimg": round(kimg, 6)}
        record["grid"] = f"grid-{run.snapshot:04d}.png"
        if fid is not None:
            with _forked_rng(run.device):
                value = fid.compute(sampler, run.models.z_dim, data)
            record["fid"] = round(value, 4)
            improved = run.patience.best is None or value < run.patience.best
            stop = run.patience.update(value, kimg)
            record["best_fid"] = run.patience.best
            state["patience"] = run.patience.state_dict()
        if run.dp is not None:
            record.update(run.dp.record())
            record["delta"] = run.dp.delta
            improved = False  # choosing by FID against the training images is not private
    # FID may have taken a while: ask right before the writes (every rank leaves together).
    if _stop_before_write(should_stop, run.dist):
        raise Stopped(f"stopped at {kimg:.2f} kimg")
    if run.dist.main:
        save_grid(images, data.n_classes, out / "grids" / record["grid"])
        # Log first, checkpoint last: a kill in between resumes from the previous checkpoint,
        # which drops this record and logs the snapshot again, so the log never has a gap.
        run_log.append(out / run_folder.SNAPSHOTS, record)
        if improved:
            ckpt.save_atomic(state, out / BEST)
        ckpt.save_atomic(state, out / CHECKPOINT)
    # The other ranks wait here while rank 0 writes, then take its decision and FID record.
    stop, patience = ddp.broadcast((stop, run.patience.state_dict()), run.dist)
    run.patience = FidPatience.from_state(patience)
    return stop


def _forked_rng(device: torch.device) -> AbstractContextManager[None]:
    """Torch's CPU generator (and `device`'s, on CUDA) restored on exit."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _write_run_info(
    out: Path, config: GanConfig, data: TrainingImages, dataset_hash: str, run: _Run
) -> None:
    from ml.provenance import code_version

    models = run.models
    info = {
        "config": asdict(config),
        "dataset_hash": dataset_hash,
        "class_names": list(data.class_names),
        "class_counts": data.class_counts(),
        "n_train_images": len(data),
        "z_dim": models.z_dim,
        "loss": models.loss,
        "code_version": code_version(),
        "torch": torch.__version__,
        "parameters": {
            "generator": sum(p.numel() for p in models.generator.parameters()),
            "discriminator": sum(p.numel() for p in models.discriminator.parameters()),
        },
        "world_size": run.dist.world_size,
        "privacy": run.dp.describe() if run.dp is not None else None,
    }
    run_folder.write_run_info(out, info)
