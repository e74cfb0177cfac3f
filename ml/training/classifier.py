"""Train an image classifier on real and/or synthetic images; test it on the real test split.

    from ml.training.classifier import ClassifierConfig, train_classifier
    result = train_classifier("datasets/7", "runs/clf-real", ClassifierConfig(epochs=10))

This is the *utility* benchmark: a model trained on real images (the reference), on synthetic
images only, or on both (GAN augmentation) is always selected on the real ``val`` split by
macro AUC and always scored on the real ``test`` split, so the numbers are comparable.

Labels: for each name in the dataset's ``label_names`` a value 1 is positive, 0 negative and
anything else (missing, a string such as "uncertain") unknown. The task is *multilabel*
(one sigmoid per label, binary cross-entropy with unknowns masked out) unless every
train / val / test image (and every synthetic class) has exactly one positive label and no
unknowns, which makes it *multiclass* (softmax cross-entropy). Either way there is one output
and one one-vs-rest AUC per label name.

Files in ``out_dir``: ``checkpoint.pt`` (after every epoch, atomically: a run started again
on the same folder resumes from the last finished epoch with every random state restored,
so it ends exactly as an uninterrupted run would on the same device), ``metrics.jsonl`` (one
line per epoch), and when training is done ``best.pt`` (weights + metadata, for
`load_classifier`), ``predictions.npz`` (test labels, scores and keys, for DeLong tests),
``features.pt`` and ``classifier.pt`` (TorchScript: pooled features and logits of the best
model, taking images in [-1, 1]) and ``result.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ml import run_folder
from ml.data.store import Entry, PreparedDataset, open_dataset
from ml.data.training_images import TrainingImages
from ml.devices import resolve_device
from ml.metrics.auc import label_aucs, macro_auc, roc_curves
from ml.networks.classifier import build_classifier, feature_module
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress
from ml.training import checkpoint as ckpt
from ml.training.classifier_config import ClassifierConfig
from ml.training.run_log import stop_before_write

CHECKPOINT = run_folder.CHECKPOINT
BEST = run_folder.BEST
METRICS = run_folder.METRICS
PREDICTIONS = "predictions.npz"
FEATURES = run_folder.FEATURES
CLASSIFIER = run_folder.CLASSIFIER
RESULT = run_folder.RESULT
NONE_POSITIVE = "none positive"
EVAL_BATCH = 64
# One image of a class makes the validation AUC a single comparison (0, 0.5 or 1), not an
# estimate: selecting checkpoints on it would pick noise, so it counts as undefined.
VAL_MIN_PER_CLASS = 2
# Augmentation magnitudes: small enough that anatomy stays plausible on a radiograph.
MAX_ROTATION_DEG = 10.0
MAX_TRANSLATION = 0.08  # fraction of the image side
MAX_SCALE = 0.10  # zoom in or out by up to 10 %
# Synthetic images outside [-1, 1] by more than this were scaled wrongly (e.g. 0..255).
_RANGE_SLACK = 1e-3

__all__ = [
    "ClassifierConfig",
    "ClassifierResult",
    "SyntheticImages",
    "label_vector",
    "load_classifier",
    "predict",
    "test_on_dataset",
    "train_classifier",
]


@dataclass(frozen=True)
class SyntheticImages:
    images: np.ndarray  # (N, C, R, R) float32 in [-1, 1] at the config's resolution
    labels: list[str]  # class names as made by training_images.class_name


@dataclass
class ClassifierResult:
    task: str
    label_names: list[str]  # output names: one AUC per output
    auc: dict[str, float | None]  # real test split; None when a label has one class only
    macro_auc: float | None
    roc: dict[str, dict[str, list[float]]]  # per label {"fpr": [...], "tpr": [...]}
    best_epoch: int
    val_macro_auc: float | None
    epochs_run: int
    n_train_real: int
    n_train_synthetic: int
    n_val: int
    n_test: int
    device: str
    stopped_early: bool
    # "val_macro_auc", or "last_epoch" when there is no val split or its AUC is undefined.
    selection: str = "val_macro_auc"
    notes: list[str] = field(default_factory=list)  # sentences for the user


# --- labels --------------------------------------------------------------------------------


def label_vector(class_label: str, label_names: Sequence[str]) -> np.ndarray:
    """'A + B' -> 1.0 at A and B and 0.0 elsewhere; 'none positive' -> all zeros."""
    names = list(label_names)
    vector = np.zeros(len(names), dtype=np.float32)
    if class_label == NONE_POSITIVE:
        return vector
    for part in class_label.split(" + "):
        if part not in names:
            known = ", ".join(repr(n) for n in [*names, NONE_POSITIVE])
            raise ValueError(
                f"class {class_label!r}: {part!r} is not a label of this dataset; "
                f"known: {known} (combined with ' + ')"
            )
        vector[names.index(part)] = 1.0
    return vector


def _entry_targets(entry: Entry, names: Sequence[str]) -> np.ndarray:
    """1 / 0 per label, NaN where unknown (missing or any value other than the ints 0, 1)."""
    out = np.full(len(names), np.nan, dtype=np.float32)
    for i, name in enumerate(names):
        value = entry.labels.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            out[i] = float(value)
    return out


def _one_hot_rows(targets: np.ndarray) -> bool:
    """Every row has exactly one 1, the rest 0, and nothing unknown."""
    if targets.size == 0:
        return True
    return bool(np.isfinite(targets).all() and (targets.sum(axis=1) == 1).all())


def _resolve_task(requested: str, names: Sequence[str], targets: Sequence[np.ndarray]) -> str:
    one_hot = all(_one_hot_rows(t) for t in targets)
    if requested == "auto":
        # One label cannot be a multiclass problem: every image would be in the same class.
        return "multiclass" if one_hot and len(names) >= 2 else "multilabel"
    if requested == "multiclass":
        if len(names) < 2:
            raise ValueError("a multiclass task needs at least two label names")
        if not one_hot:
            raise ValueError(
                "task 'multiclass' needs exactly one positive label and no unknown label on "
                "every image; use 'multilabel' (or 'auto') for this dataset"
            )
    return requested


# --- data ----------------------------------------------------------------------------------


@dataclass
class _Split:
    """The real images of one split with their targets and keys."""

    data: TrainingImages
    targets: np.ndarray  # (n, L) float, NaN unknown
    keys: list[str]

    @classmethod
    def of(cls, store: PreparedDataset, resolution: int, split: str) -> _Split | None:
        if store.indices(split).size == 0:
            return None
        data = TrainingImages(store, resolution, split)
        entries = [store.entries[i] for i in data.rows]
        names = store.info.label_names
        targets = np.stack([_entry_targets(e, names) for e in entries])
        return cls(data, targets, [e.key for e in entries])

    def __len__(self) -> int:
        return len(self.keys)


def _check_synthetic(
    synthetic: SyntheticImages, channels: int, resolution: int, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(synthetic.images, dtype=np.float32)
    want = (channels, resolution, resolution)
    if images.ndim != 4 or images.shape[1:] != want or images.shape[0] == 0:
        raise ValueError(
            f"synthetic images must be (N, {channels}, {resolution}, {resolution}) to match "
            f"the dataset's {channels} channel(s) at resolution {resolution}, "
            f"got {images.shape}"
        )
    if len(synthetic.labels) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} synthetic images but {len(synthetic.labels)} labels")
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("synthetic images contain NaN or infinity")
    if low < -1 - _RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise ValueError(f"synthetic images must lie in [-1, 1], found [{low:.3g}, {high:.3g}]")
    targets = np.stack([label_vector(str(label), names) for label in synthetic.labels])
    return images, targets


def _fingerprint_synthetic(images: np.ndarray | None, labels: Sequence[str]) -> str | None:
    if images is None:
        return None
    digest = hashlib.sha256(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(json.dumps(list(map(str, labels))).encode())
    return digest.hexdigest()


class _Pool:
    """The training images: real train rows (read from the memmap per batch), then the
    synthetic images."""

    def __init__(
        self, real: _Split | None, synthetic: np.ndarray | None, synthetic_targets: np.ndarray
    ) -> None:
        self.real = real
        self.synthetic = synthetic
        self.n_real = len(real) if real is not None else 0
        self.n_synthetic = 0 if synthetic is None else int(synthetic.shape[0])
        parts = [real.targets] if real is not None else []
        if synthetic is not None:
            parts.append(synthetic_targets)
        self.targets = np.concatenate(parts).astype(np.float32)

    def __len__(self) -> int:
        return self.n_real + self.n_synthetic

    def images(self, index: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        out = torch.empty((index.size, *shape), dtype=torch.float32)
        is_real = index < self.n_real
        if is_real.any():
            assert self.real is not None
            out[torch.from_numpy(is_real)] = self.real.data.load(index[is_real])[0]
        if (~is_real).any():
            assert self.synthetic is not None
            fake = self.synthetic[index[~is_real] - self.n_real]
            out[torch.from_numpy(~is_real)] = torch.from_numpy(fake)
        return out

    def sample_weights(self) -> torch.Tensor:
        """1 / (images with the same label combination): each combination equally likely."""
        keys = np.nan_to_num(self.targets, nan=-1.0)
        _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        return torch.from_numpy(1.0 / counts[inverse.reshape(-1)]).double()


def _batches(pool: _Pool, config: ClassifierConfig, rng: torch.Generator) -> list[np.ndarray]:
    """One epoch's batches of pool indices. Sizes differ by at most one, so no batch is left
    with a single image (which batch normalisation cannot train on)."""
    n = len(pool)
    if config.balanced:
        order = torch.multinomial(pool.sample_weights(), n, replacement=True, generator=rng)
    else:
        order = torch.randperm(n, generator=rng)
    return np.array_split(order.numpy(), _steps_per_epoch(n, config.batch_size))


def _steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


# --- training ------------------------------------------------------------------------------


def _augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random rotation, shift and zoom per image; the border uncovered is filled black (-1)."""
    b = images.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(b, generator=rng) * 2.0 - 1.0) * limit

    angle = uniform(math.radians(MAX_ROTATION_DEG))
    scale = 1.0 + uniform(MAX_SCALE)
    shift = torch.stack([uniform(2.0 * MAX_TRANSLATION), uniform(2.0 * MAX_TRANSLATION)], 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample pads with zeros; shifting by +1 first makes that padding -1 (black).
    moved = F.grid_sample(images + 1.0, grid, mode="bilinear", align_corners=False)
    return moved - 1.0


def _loss(logits: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    if task == "multiclass":
        return F.cross_entropy(logits, targets.argmax(dim=1))
    known = ~torch.isnan(targets)
    per_label = F.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(targets), reduction="none"
    )
    # Unknown labels add nothing; the mean is over the known ones in the batch.
    return (per_label * known).sum() / known.sum().clamp_min(1)


def predict(
    model: torch.nn.Module, images: torch.Tensor, task: str, batch_size: int = 64
) -> np.ndarray:
    """Probabilities (N, L): sigmoid per output (multilabel) or softmax (multiclass)."""
    if task not in ("multilabel", "multiclass"):
        raise ValueError(f"task must be 'multilabel' or 'multiclass', got {task!r}")
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                logits = model(images[start : start + batch_size].to(device).float())
                probs = logits.softmax(1) if task == "multiclass" else logits.sigmoid()
                outputs.append(probs.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs)


def _split_scores(model: torch.nn.Module, split: _Split, task: str) -> np.ndarray:
    """Probabilities for a real split, reading the memmap a batch at a time."""
    parts = []
    for start in range(0, len(split), EVAL_BATCH):
        positions = np.arange(start, min(start + EVAL_BATCH, len(split)))
        images, _ = split.data.load(positions)
        parts.append(predict(model, images, task, EVAL_BATCH))
    return np.concatenate(parts)


@dataclass
class _State:
    """The mutable part of a run that a checkpoint restores."""

    epoch: int = 0  # epochs finished
    best_epoch: int = 0
    best_score: float | None = None
    best_model: dict[str, torch.Tensor] | None = None
    since_best: int = 0
    stopped_early: bool = False


def _fingerprint(
    config: ClassifierConfig, dataset_hash: str, use_real: bool, synthetic: str | None
) -> dict[str, Any]:
    # The device does not change what is trained: a run may resume on another machine.
    settings = {k: v for k, v in asdict(config).items() if k != "device"}
    return {
        "config": settings,
        "dataset_hash": dataset_hash,
        "use_real": use_real,
        "synthetic_sha256": synthetic,
    }


def _same_run(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    # Config fields added since the checkpoint was written take their defaults.
    defaults = {
        f.name: f.default
        for f in fields(ClassifierConfig)
        if f.name not in saved["config"] and f.name != "device"
    }
    return {**saved, "config": {**saved["config"], **defaults}} == current


class _Run:
    def __init__(
        self, config: ClassifierConfig, in_channels: int, names: Sequence[str], task: str
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.task = task
        torch.manual_seed(config.seed)  # identical initial weights for a seed
        self.model = build_classifier(config.arch, in_channels, len(names)).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.rng = torch.Generator().manual_seed(config.seed)  # data order and augmentation
        self.state = _State()

    def checkpoint(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "fingerprint": fingerprint,
            "task": self.task,
            # Not asdict: it would deep-copy the best weights on every save.
            "state": {f.name: getattr(self.state, f.name) for f in fields(_State)},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.rng.set_state(saved["rng"].cpu())
        torch.set_rng_state(saved["torch_rng"].cpu())
        if self.device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), self.device)
        self.state = _State(**saved["state"])

    def train_epoch(
        self,
        pool: _Pool,
        shape: tuple[int, ...],
        on_step: Callable[[float], None],
        should_stop: StopFn,
    ) -> float:
        self.model.train()
        total, count = 0.0, 0
        for batch in _batches(pool, self.config, self.rng):
            if should_stop():
                raise Stopped(f"stopped in epoch {self.state.epoch + 1}")
            images = pool.images(batch, shape).to(self.device)
            if self.config.augment:
                images = _augment(images, self.rng)
            targets = torch.from_numpy(pool.targets[batch])
            logits = self.model(images)
            loss = _loss(logits, targets.to(self.device), self.task)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * batch.size
            count += batch.size
            on_step(total / count)
        return total / max(count, 1)


def _select(run: _Run, val_score: float | None, has_val: bool) -> bool:
    """Update the best model after an epoch; True when early stopping should end the run."""
    state = run.state
    if has_val and val_score is not None:
        improved = state.best_score is None or val_score > state.best_score
    else:
        improved = True  # nothing to select on: the latest epoch is the one kept
    if improved:
        state.best_epoch, state.best_score = state.epoch, val_score
        state.best_model = copy.deepcopy(run.model.state_dict())
        state.since_best = 0
    else:
        state.since_best += 1
    patience = run.config.patience
    return bool(patience and has_val and val_score is not None and state.since_best >= patience)


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Drop the epochs logged after the checkpoint resumed from: they will be logged again."""
    if not path.exists():
        return
    lines = [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    keep = [s for s in lines if json.loads(s)["epoch"] <= epoch]
    path.write_text("".join(f"{s}\n" for s in keep), encoding="utf-8")


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def _epoch_message(epoch: int, epochs: int, loss: float, val: float | None) -> str:
    auc = "n/a" if val is None else f"{val:.3f}"
    return f"epoch {epoch}/{epochs} loss {loss:.3f} val AUC {auc}"


@dataclass
class _Data:
    store: PreparedDataset
    names: list[str]
    train: _Split | None
    val: _Split | None
    test: _Split
    synthetic: np.ndarray | None
    synthetic_targets: np.ndarray
    task: str


def _load_data(
    dataset_path: Path | str,
    config: ClassifierConfig,
    use_real: bool,
    synthetic: SyntheticImages | None,
) -> _Data:
    store = open_dataset(dataset_path)
    if config.resolution not in store.info.resolutions:
        raise ValueError(
            f"the dataset has no {config.resolution} px images; it has "
            f"{', '.join(map(str, store.info.resolutions))}"
        )
    names = list(store.info.label_names)
    if not names:
        raise ValueError("the dataset has no labels to train a classifier on")
    test = _Split.of(store, config.resolution, "test")
    if test is None:
        raise ValueError("the dataset has no 'test' split: a classifier is always tested on it")
    train_split = _Split.of(store, config.resolution, "train")
    train = train_split if use_real else None
    if use_real and train is None:
        raise ValueError("the dataset has no 'train' split to train on (use_real=True)")
    if not use_real and synthetic is None:
        raise ValueError("nothing to train on: use_real=False and no synthetic images")
    val = _Split.of(store, config.resolution, "val")
    fake, fake_targets = None, np.zeros((0, len(names)), dtype=np.float32)
    if synthetic is not None:
        fake, fake_targets = _check_synthetic(synthetic, store.channels, config.resolution, names)
    # Every real split takes part in the decision, not just the ones trained on: the same
    # dataset must give the same task for real-, synthetic- and mixed-trained models.
    real = [s.targets for s in (train_split, val, test) if s is not None]
    task = _resolve_task(config.task, names, [*real, fake_targets])
    n_train = (len(train) if train else 0) + (0 if fake is None else len(fake))
    if n_train < 2:
        raise ValueError(f"at least 2 training images are needed, got {n_train}")
    return _Data(store, names, train, val, test, fake, fake_targets, task)


def train_classifier(
    dataset_path: Path | str,
    out_dir: Path | str,
    config: ClassifierConfig,
    *,
    use_real: bool = True,
    synthetic: SyntheticImages | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ClassifierResult:
    """Train (or resume) the classifier run in `out_dir` and test its best model."""
    config.check()
    out = Path(out_dir)
    data = _load_data(dataset_path, config, use_real, synthetic)
    fingerprint = _fingerprint(
        config,
        data.store.info.content_hash,
        use_real,
        _fingerprint_synthetic(data.synthetic, synthetic.labels if synthetic else []),
    )
    run = _Run(config, data.store.channels, data.names, data.task)
    metrics = out / METRICS
    if (out / CHECKPOINT).exists():
        saved = ckpt.load(out / CHECKPOINT, run.device)
        if not _same_run(saved["fingerprint"], fingerprint):
            raise ValueError(
                f"{out} holds a classifier run with another dataset, training images or "
                "config; use a new folder"
            )
        run.restore(saved)
        _truncate_metrics(metrics, run.state.epoch)
    else:
        out.mkdir(parents=True, exist_ok=True)
        metrics.unlink(missing_ok=True)
    pool = _Pool(data.train, data.synthetic, data.synthetic_targets)
    _train(run, data, pool, out, fingerprint, progress, should_stop)
    return _finish(run, data, pool, out)


def _train(
    run: _Run,
    data: _Data,
    pool: _Pool,
    out: Path,
    fingerprint: dict[str, Any],
    progress: ProgressFn,
    should_stop: StopFn,
) -> None:
    config, state = run.config, run.state
    shape = (data.store.channels, config.resolution, config.resolution)
    steps = _steps_per_epoch(len(pool), config.batch_size)
    total = steps * config.epochs
    while state.epoch < config.epochs and not state.stopped_early:
        epoch = state.epoch + 1
        started = time.perf_counter()
        done = state.epoch * steps

        def on_step(loss: float, epoch: int = epoch) -> None:
            nonlocal done
            done += 1
            progress(done, total, f"epoch {epoch}/{config.epochs} loss {loss:.3f}")

        loss = run.train_epoch(pool, shape, on_step, should_stop)
        val = None
        if data.val is not None:
            scores = _split_scores(run.model, data.val, run.task)
            val = macro_auc(
                label_aucs(data.val.targets, scores, data.names, min_per_class=VAL_MIN_PER_CLASS)
            )
        state.epoch = epoch
        state.stopped_early = _select(run, val, data.val is not None)
        record = {
            "epoch": epoch,
            "train_loss": round(loss, 6),
            "val_macro_auc": None if val is None else round(val, 6),
            "seconds": round(time.perf_counter() - started, 3),
        }
        # Log first, checkpoint last: a kill in between repeats this epoch on resume, and
        # the resumed run drops the record before logging it again. A job attempt that lost
        # its job meanwhile writes neither.
        if stop_before_write(should_stop):
            raise Stopped(f"stopped after epoch {epoch - 1}")
        _append_metrics(out / METRICS, record)
        ckpt.save_atomic(run.checkpoint(fingerprint), out / CHECKPOINT)
        progress(epoch * steps, total, _epoch_message(epoch, config.epochs, loss, val))


def _finish(run: _Run, data: _Data, pool: _Pool, out: Path) -> ClassifierResult:
    """Test the best model on the real test split and write every output file."""
    state, config = run.state, run.config
    assert state.best_model is not None
    run.model.load_state_dict(state.best_model)
    run.model.eval()
    scores = _split_scores(run.model, data.test, run.task)
    y_true = data.test.targets
    auc = label_aucs(y_true, scores, data.names)
    selection = "val_macro_auc" if state.best_score is not None else "last_epoch"
    notes = _notes(data, auc, selection)
    result = ClassifierResult(
        task=run.task,
        label_names=list(data.names),
        auc=auc,
        macro_auc=macro_auc(auc),
        roc=roc_curves(y_true, scores, data.names),
        best_epoch=state.best_epoch,
        val_macro_auc=state.best_score,
        epochs_run=state.epoch,
        n_train_real=pool.n_real,
        n_train_synthetic=pool.n_synthetic,
        n_val=len(data.val) if data.val is not None else 0,
        n_test=len(data.test),
        device=str(run.device),
        stopped_early=state.stopped_early,
        selection=selection,
        notes=notes,
    )
    np.savez(
        out / PREDICTIONS,
        y_true=y_true.astype(np.float32),
        scores=scores.astype(np.float32),
        keys=np.asarray(data.test.keys, dtype=str),
    )
    metadata = {
        "arch": config.arch,
        "in_channels": data.store.channels,
        "label_names": list(data.names),
        "task": run.task,
        "resolution": config.resolution,
        "best_epoch": state.best_epoch,
        "val_macro_auc": state.best_score,
        "dataset_hash": data.store.info.content_hash,
        "config": asdict(config),
    }
    ckpt.save_atomic({"model": state.best_model, "metadata": metadata}, out / BEST)
    _export(run.model, data.store.channels, config.resolution, out)
    (out / RESULT).write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    return result


def _notes(data: _Data, auc: dict[str, float | None], selection: str) -> list[str]:
    notes = []
    if data.val is None:
        notes.append("The dataset has no 'val' split: the last epoch's model is tested.")
    elif selection == "last_epoch":
        notes.append(
            f"No label has {VAL_MIN_PER_CLASS} or more images of each class in the 'val' split, "
            "so there is no validation AUC: "
            "the last epoch's model is tested."
        )
    for name, value in auc.items():
        if value is None:
            notes.append(f"'{name}' lacks a positive or a negative known test label: no AUC.")
    return notes


def _export(model: torch.nn.Module, channels: int, resolution: int, out: Path) -> None:
    """TorchScript copies of the best model (logits) and of its pooled features, on CPU."""
    frozen = copy.deepcopy(model).cpu().eval()
    if hasattr(frozen, "set_swish"):
        frozen.set_swish(memory_efficient=False)  # EfficientNet: a scriptable swish
    example = torch.zeros(2, channels, resolution, resolution)
    # TorchScript is deprecated in recent torch but is the format the FID feature loader and
    # the GAN's domain-classifier loss read; the warnings would only clutter job logs.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logits = torch.jit.trace(frozen, example)
        features = torch.jit.trace(feature_module(frozen), example)
        _save_script(logits, out / CLASSIFIER)
        _save_script(features, out / FEATURES)


def _save_script(module: torch.jit.ScriptModule, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(module, str(tmp))
    tmp.replace(path)


def load_classifier(
    path: Path | str, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best model of a run (its folder, or a best.pt file) in eval mode, and its
    metadata: arch, in_channels, label_names, task, resolution, ..."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is the classifier run finished?")
    saved = ckpt.load(path, "cpu")
    meta = saved["metadata"]
    model = build_classifier(meta["arch"], meta["in_channels"], len(meta["label_names"]))
    model.load_state_dict(saved["model"])
    return model.to(resolve_device(str(device))).eval(), meta


# --- external validation -------------------------------------------------------------------


def test_on_dataset(
    run: Path | str, dataset_path: Path | str, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The finished classifier of `run` scored on every image of another dataset (a second
    site's data with the same label names): external validation uses the whole dataset, not
    its test split, since none of it was seen in training or model selection.

    Labels are matched by name, so the other dataset may list them in another order. Returns
    per-label AUC and its 95% DeLong interval, the macro AUC and the image counts."""
    from ml.metrics.auc_ci import label_auc_intervals

    model, meta = load_classifier(run, device=device)
    names = list(meta["label_names"])
    store = open_dataset(dataset_path)
    theirs = list(store.info.label_names)
    if sorted(theirs) != sorted(names):
        raise ValueError(
            f"the external dataset's labels ({', '.join(theirs)}) are not the classifier's "
            f"({', '.join(names)})"
        )
    resolution = int(meta["resolution"])
    if resolution not in store.info.resolutions or store.channels != meta["in_channels"]:
        raise ValueError(
            f"the external dataset has no {meta['in_channels']}-channel {resolution} px images"
        )
    data = TrainingImages(store, resolution, None)
    y_true = np.stack([_entry_targets(store.entries[i], names) for i in data.rows])
    split = _Split(data, y_true, [store.entries[i].key for i in data.rows])
    scores = _split_scores(model, split, meta["task"])
    auc = label_aucs(y_true, scores, names)
    return {
        "auc": auc,
        "auc_ci": label_auc_intervals(y_true, scores, names),
        "macro_auc": macro_auc(auc),
        "n": len(split),
        "n_known": {n: int((~np.isnan(y_true[:, j])).sum()) for j, n in enumerate(names)},
        "dataset_hash": store.info.content_hash,
    }
