"""Seed 001's domain-classifier loss: a frozen classifier scores each fake against the class
the generator was asked for, and the generator is penalised by that loss.

GAN classes are the dataset's unique label combinations ('pneumonia', 'none positive',
'Edema + Effusion'); a classifier's outputs are label names. The classifier's head decides
how a class becomes a target:

* multiclass (softmax over its outputs): the class's single positive label is the target
  index, and the loss is the cross-entropy;
* multilabel (a sigmoid per output, so also a binary classifier's single logit): the class's
  label values are the targets (1 positive, 0 negative, anything else unknown and left out),
  and the loss is the binary cross-entropy, as `ml.training.classifier` trains it.

A classifier trained by `ml.training.classifier` says which head it has in the `result.json`
beside its `classifier.pt` (task and label_names). A TorchScript file without one is taken to
give logits over this run's classes, in `class_names` order (a multiclass head).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ml.data.store import LabelValue

MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
METADATA = "result.json"  # written by ml.training.classifier beside classifier.pt


@dataclass(frozen=True)
class ClassifierHead:
    """What a classifier outputs: its task and the name of each output."""

    task: str
    output_names: tuple[str, ...]


@dataclass(frozen=True)
class DomainTargets:
    """Per GAN class, the target the classifier should give a fake of that class."""

    task: str
    # multiclass: (n_classes,) output index; multilabel: (n_classes, n_outputs) 1 / 0 / NaN.
    targets: torch.Tensor

    @property
    def n_outputs(self) -> int | None:
        return None if self.task == MULTICLASS else int(self.targets.shape[1])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of `logits` (B, n_outputs) for fakes of classes `labels` (B,)."""
        targets = self.targets.to(logits.device)[labels]
        if self.task == MULTICLASS:
            return F.cross_entropy(logits, targets)
        known = ~torch.isnan(targets)
        per_output = F.binary_cross_entropy_with_logits(
            logits, torch.nan_to_num(targets).to(logits.dtype), reduction="none"
        )
        # As the classifier was trained: unknown labels add nothing, the mean is over the rest.
        return (per_output * known).sum() / known.sum().clamp_min(1)


def domain_targets(
    head: ClassifierHead | None,
    label_names: Sequence[str],
    class_names: Sequence[str],
    combos: Sequence[tuple[LabelValue | None, ...]],
) -> DomainTargets:
    """The targets for this run's classes (`class_names`, with their label `combos` in
    `label_names` order); `head` None means logits over `class_names` themselves."""
    if head is None:
        return DomainTargets(MULTICLASS, torch.arange(len(class_names)))
    position = {name: i for i, name in enumerate(label_names)}
    missing = [name for name in head.output_names if name not in position]
    if missing:
        raise ValueError(
            f"domain classifier outputs {missing} are not labels of this dataset "
            f"({list(label_names)})"
        )
    if head.task == MULTICLASS:
        index = []
        for name, combo in zip(class_names, combos, strict=True):
            positive = [n for n in head.output_names if combo[position[n]] == 1]
            if len(positive) != 1:
                raise ValueError(
                    f"the domain classifier is multiclass over {list(head.output_names)}, but "
                    f"class {name!r} has {len(positive)} of those labels positive, not one"
                )
            index.append(head.output_names.index(positive[0]))
        return DomainTargets(MULTICLASS, torch.tensor(index))
    if head.task != MULTILABEL:
        raise ValueError(f"unknown classifier task {head.task!r}")
    rows = [[_target(combo[position[n]]) for n in head.output_names] for combo in combos]
    return DomainTargets(MULTILABEL, torch.tensor(rows, dtype=torch.float32))


def _target(value: LabelValue | None) -> float:
    # The classifier's own reading of a label: the ints 1 and 0, anything else unknown.
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return float(value)
    return math.nan


def classifier_head(path: Path | str) -> ClassifierHead | None:
    """The head a classifier file declares in its run's result.json; None without one."""
    meta = Path(path).with_name(METADATA)
    if not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        return ClassifierHead(str(info["task"]), tuple(str(n) for n in info["label_names"]))
    except (ValueError, KeyError, TypeError):
        return None  # some other result.json: not a classifier run's


@dataclass
class DomainClassifier:
    """The frozen classifier and the targets it is scored against."""

    module: torch.nn.Module
    targets: DomainTargets

    def loss(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.targets.loss(self.module(fake.float()), labels)


def load_domain_classifier(
    path: str,
    label_names: Sequence[str],
    class_names: Sequence[str],
    combos: Sequence[tuple[LabelValue | None, ...]],
    channels: int,
    resolution: int,
    device: torch.device,
) -> DomainClassifier:
    """Load, freeze and check a TorchScript classifier against this run's classes."""
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent torch but is the format classifier runs
            # export; the warning would only clutter job logs.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(path, map_location=device)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ValueError(f"domain classifier {path}: {exc}") from None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)  # frozen: only the generator learns from its verdict
    head = classifier_head(path)
    targets = domain_targets(head, label_names, class_names, combos)
    want = len(head.output_names) if head is not None else len(class_names)
    probe = torch.zeros(2, channels, resolution, resolution, device=device)
    with torch.no_grad():
        logits = module(probe)
    if tuple(logits.shape) != (2, want):
        over = (
            f"{head.task} logits over {list(head.output_names)} (its {METADATA})"
            if head is not None
            else f"logits over {list(class_names)}"
        )
        raise ValueError(
            f"domain classifier gives {tuple(logits.shape)} for 2 images; this run needs "
            f"(2, {want}) {over}"
        )
    return DomainClassifier(module, targets)
