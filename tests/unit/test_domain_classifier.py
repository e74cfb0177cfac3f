"""Seed 001's domain-classifier loss with synthbench's own classifiers: binary (one sigmoid
logit), multilabel and multiclass heads, mapped from their label names to the GAN's classes
(label combinations)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml.data.store import DatasetWriter
from ml.data.training_images import TrainingImages
from ml.training.classifier import ClassifierConfig, train_classifier
from ml.training.domain_loss import (
    MULTICLASS,
    MULTILABEL,
    ClassifierHead,
    domain_targets,
    load_domain_classifier,
)
from ml.training.gan import GanConfig, train_gan

N = 40  # 24 train, 8 val, 8 test


def _write(root: Path, label_names: tuple[str, ...]) -> Path:
    """Bright left half vs bright right half; labels as `label_names` ask: ("right",) is a
    binary 0/1 dataset, ("left", "right") one-hot, ("left", "right", "bright") multi-label."""
    writer = DatasetWriter(root, (16,), N, label_names=label_names)
    rng = np.random.default_rng(0)
    splits = {}
    for i in range(N):
        side = i % 2
        image = rng.uniform(0.0, 0.2, (20, 20))
        image[:, side * 10 : side * 10 + 10] += 0.7
        values = {"left": int(side == 0), "right": int(side == 1), "bright": 1}
        key = f"k{i:03d}"
        writer.add(key, f"p{i}", {n: values[n] for n in label_names}, f"{i:064x}", image)
        splits[key] = "train" if i < 24 else "val" if i < 32 else "test"
    writer.finish(splits, fsync=False)
    return root


def _classifier(data: Path, out: Path, **overrides: object) -> Path:
    config = ClassifierConfig(
        arch="tiny-densenet", resolution=16, epochs=4, batch_size=8, lr=3e-3, augment=False
    )
    train_classifier(data, out, replace(config, **overrides))
    return out / "classifier.pt"


def _load(path: Path, data: Path):
    images = TrainingImages(data, 16, "train")
    domain = load_domain_classifier(
        str(path),
        images.store.info.label_names,
        images.class_names,
        images.classes.combos,
        images.channels,
        16,
        torch.device("cpu"),
    )
    return domain, images


def test_targets_for_each_kind_of_head() -> None:
    names = ("pneumonia", "effusion")
    combos = [(0, 0), (1, 0), (1, 1), (0, "uncertain")]
    classes = ["none positive", "pneumonia", "pneumonia + effusion", "none positive?"]
    binary = domain_targets(ClassifierHead(MULTILABEL, ("pneumonia",)), names, classes, combos)
    assert binary.targets.tolist() == [[0.0], [1.0], [1.0], [0.0]]
    multi = domain_targets(
        ClassifierHead(MULTILABEL, ("effusion", "pneumonia")), names, classes, combos
    )
    assert multi.targets[:3].tolist() == [[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert math.isnan(multi.targets[3, 0]) and multi.targets[3, 1] == 0.0
    # Unknown labels add nothing: only the known output of class 3 counts.
    logits = torch.tensor([[5.0, -2.0]])
    want = F.binary_cross_entropy_with_logits(torch.tensor(-2.0), torch.tensor(0.0))
    assert multi.loss(logits, torch.tensor([3])).item() == pytest.approx(want.item())
    # A multiclass head: each class's one positive label, by name, in the head's order.
    one_hot = domain_targets(
        ClassifierHead(MULTICLASS, ("right", "left")),
        ("left", "right"),
        ["left", "right"],
        [(1, 0), (0, 1)],
    )
    assert one_hot.targets.tolist() == [1, 0]
    with pytest.raises(ValueError, match="has 0 of those labels positive, not one"):
        domain_targets(ClassifierHead(MULTICLASS, names), names, classes, combos)
    with pytest.raises(ValueError, match="not labels of this dataset"):
        domain_targets(ClassifierHead(MULTILABEL, ("edema",)), names, classes, combos)
    # No head declared: logits over the run's classes, in their order.
    assert domain_targets(None, names, classes, combos).targets.tolist() == [0, 1, 2, 3]


def test_a_binary_classifier_guides_a_gan(tmp_path: Path) -> None:
    data = _write(tmp_path / "binary", ("right",))
    path = _classifier(data, tmp_path / "clf")
    assert json.loads((tmp_path / "clf" / "result.json").read_text())["task"] == MULTILABEL
    domain, images = _load(path, data)
    assert set(images.class_names) == {"right", "none positive"}
    assert domain.targets.n_outputs == 1  # one sigmoid logit: (2, 1), not (2, 2)
    # The right targets, not swapped ones: real images score better against their own class.
    real, labels = images.load(np.arange(len(images)))
    with torch.no_grad():
        own = domain.loss(real, labels).item()
        swapped = domain.loss(real, 1 - labels).item()
    assert own < swapped, (own, swapped)

    config = GanConfig(
        arch="dcgan",
        resolution=16,
        batch_size=8,
        kimg=0.032,
        tick_kimg=0.016,
        arch_options={"base_channels": 8},
        domain_classifier=str(path),
        domain_lambda=1.0,
    )
    train_gan(data, tmp_path / "gan", config)
    ticks = [json.loads(line) for line in (tmp_path / "gan" / "metrics.jsonl").open()]
    assert len(ticks) == 2 and all(np.isfinite(t["domain_ce"]) for t in ticks)


def test_multilabel_and_multiclass_classifiers_are_mapped_by_label_name(tmp_path: Path) -> None:
    data = _write(tmp_path / "multi", ("left", "right", "bright"))
    path = _classifier(data, tmp_path / "multi-clf", epochs=2)
    domain, images = _load(path, data)
    assert domain.targets.task == MULTILABEL and domain.targets.n_outputs == 3
    by_class = dict(zip(images.class_names, domain.targets.targets.tolist(), strict=True))
    assert by_class == {"left + bright": [1.0, 0.0, 1.0], "right + bright": [0.0, 1.0, 1.0]}

    data = _write(tmp_path / "onehot", ("left", "right"))
    path = _classifier(data, tmp_path / "onehot-clf", epochs=2)
    domain, images = _load(path, data)
    assert domain.targets.task == MULTICLASS
    outputs = ("left", "right")  # the classifier's outputs, in label_names order
    want = [outputs.index(name) for name in images.class_names]
    assert domain.targets.targets.tolist() == want
