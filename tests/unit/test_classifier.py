"""Classifier networks and the train-on-real / synthetic, test-on-real loop, on a tiny CPU
network and 16 px images whose two classes are obvious (bright left vs right half)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.data.store import DatasetWriter
from ml.data.training_images import TrainingImages
from ml.networks.classifier import ARCHS, build_classifier, cam_layer, feature_module
from ml.progress import Stopped
from ml.training.classifier import (
    CHECKPOINT,
    ClassifierConfig,
    ClassifierResult,
    SyntheticImages,
    label_vector,
    load_classifier,
    predict,
    train_classifier,
)

N = 40  # 24 train, 8 val, 8 test; the sides alternate so every split has both classes
FILES = ("checkpoint.pt", "best.pt", "metrics.jsonl", "predictions.npz", "features.pt")


def _split(i: int, with_val: bool = True) -> str:
    if i < 24:
        return "train"
    if i < 32:
        return "val" if with_val else "train"
    return "test"


def _write(
    root: Path,
    *,
    labels: dict[int, dict[str, int | str]] | None = None,
    split=_split,
) -> Path:
    writer = DatasetWriter(root, (16,), N, label_names=("left", "right"))
    rng = np.random.default_rng(0)
    splits = {}
    for i in range(N):
        side = i % 2
        image = rng.uniform(0.0, 0.2, (20, 20))
        image[:, side * 10 : side * 10 + 10] += 0.7
        key = f"k{i:03d}"
        default = {"left": int(side == 0), "right": int(side == 1)}
        writer.add(key, f"p{i}", (labels or {}).get(i, default), f"{i:064x}", image.clip(0, 1))
        splits[key] = split(i)
    writer.finish(splits, fsync=False)
    return root


def _config(**overrides: object) -> ClassifierConfig:
    base = ClassifierConfig(
        arch="tiny-densenet", resolution=16, epochs=5, batch_size=8, lr=3e-3, augment=False
    )
    return replace(base, **overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("clf") / "data")


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ClassifierResult]:
    out = tmp_path_factory.mktemp("clf") / "run"
    calls: list[tuple[float, float, str]] = []
    result = train_classifier(
        data, out, _config(augment=True), progress=lambda d, t, m: calls.append((d, t, m))
    )
    assert calls[-1][0] == calls[-1][1] == 15  # 5 epochs of 3 steps
    assert calls[-1][2].startswith("epoch 5/5 loss ") and " val AUC " in calls[-1][2]
    return out, result


def test_learns_obvious_classes_and_writes_every_file(
    trained: tuple[Path, ClassifierResult],
) -> None:
    out, result = trained
    assert result.task == "multiclass" and result.label_names == ["left", "right"]
    assert result.macro_auc is not None and result.macro_auc > 0.9
    assert set(result.auc) == {"left", "right"} and set(result.roc) == {"left", "right"}
    assert result.roc["left"]["fpr"][0] == 0.0 and result.roc["left"]["tpr"][-1] == 1.0
    assert (result.n_train_real, result.n_train_synthetic, result.n_val, result.n_test) == (
        24,
        0,
        8,
        8,
    )
    assert result.epochs_run == 5 and 1 <= result.best_epoch <= 5 and not result.stopped_early
    assert result.selection == "val_macro_auc" and result.device == "cpu"
    for name in (*FILES, "classifier.pt", "result.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "result.json").read_text())
    assert saved["macro_auc"] == result.macro_auc and saved["auc"] == result.auc
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    assert set(lines[0]) == {"epoch", "train_loss", "val_macro_auc", "seconds"}
    with np.load(out / "predictions.npz") as p:
        assert p["y_true"].shape == p["scores"].shape == (8, 2)
        assert p["keys"].tolist() == [f"k{i:03d}" for i in range(32, 40)]
        np.testing.assert_allclose(p["scores"].sum(axis=1), 1.0, atol=1e-5)  # softmax


def test_exported_modules_match_the_eager_model(
    trained: tuple[Path, ClassifierResult], data: Path
) -> None:
    out, _ = trained
    model, meta = load_classifier(out)
    assert not model.training
    assert meta["arch"] == "tiny-densenet" and meta["in_channels"] == 1
    assert meta["label_names"] == ["left", "right"] and meta["task"] == "multiclass"
    assert meta["resolution"] == 16
    images, _ = TrainingImages(data, 16, "test").all()
    features = torch.jit.load(str(out / "features.pt"))
    scripted = torch.jit.load(str(out / "classifier.pt"))
    with torch.no_grad():
        feats = features(images[:3])
        logits = scripted(images[:3])
        eager = model(images[:3])
    assert feats.ndim == 2 and feats.shape[0] == 3
    assert logits.shape == (3, 2)
    torch.testing.assert_close(logits, eager, atol=1e-5, rtol=1e-5)
    probs = predict(model, images, "multiclass", batch_size=3)
    with np.load(out / "predictions.npz") as p:
        np.testing.assert_allclose(probs, p["scores"], atol=1e-5)
    same_model, _ = load_classifier(out / "best.pt")
    assert same_model.state_dict().keys() == model.state_dict().keys()


def test_synthetic_only_training(data: Path, tmp_path: Path) -> None:
    real = TrainingImages(data, 16, "train")
    images, classes = real.all()
    names = [real.class_names[int(c)] for c in classes]
    assert set(names) == {"left", "right"}
    synthetic = SyntheticImages(images.numpy(), names)
    result = train_classifier(
        data, tmp_path, _config(balanced=True), use_real=False, synthetic=synthetic
    )
    assert result.n_train_real == 0 and result.n_train_synthetic == 24
    assert result.macro_auc is not None and result.macro_auc > 0.9
    mixed = train_classifier(data, tmp_path / "mixed", _config(epochs=1), synthetic=synthetic)
    assert (mixed.n_train_real, mixed.n_train_synthetic) == (24, 24)


def test_label_vector() -> None:
    names = ["Edema", "Effusion", "pneumonia"]
    assert label_vector("pneumonia", names).tolist() == [0, 0, 1]
    assert label_vector("Edema + Effusion", names).tolist() == [1, 1, 0]
    assert label_vector("none positive", names).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"'Atelectasis'.*known: 'Edema', 'Effusion'"):
        label_vector("Atelectasis", names)


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((2, 3, 16, 16), np.float32), ["left", "right"], r"1 channel\(s\)"),
        (np.zeros((2, 1, 8, 8), np.float32), ["left", "right"], "resolution 16"),
        (np.zeros((2, 1, 16, 16), np.float32), ["left"], "2 synthetic images but 1 labels"),
        (np.full((2, 1, 16, 16), 255.0, np.float32), ["left", "right"], r"\[-1, 1\]"),
        (np.zeros((2, 1, 16, 16), np.float32), ["left", "up"], "'up' is not a label"),
    ],
)
def test_synthetic_images_must_fit_the_dataset(
    data: Path, tmp_path: Path, images: np.ndarray, labels: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train_classifier(data, tmp_path, _config(), synthetic=SyntheticImages(images, labels))


def test_dataset_errors(data: Path, tmp_path: Path) -> None:
    no_test = _write(tmp_path / "no_test", split=lambda i: "train" if i < 30 else "val")
    with pytest.raises(ValueError, match="no 'test' split"):
        train_classifier(no_test, tmp_path / "a", _config())
    with pytest.raises(ValueError, match="no 32 px images"):
        train_classifier(data, tmp_path / "b", _config(resolution=32))
    with pytest.raises(ValueError, match="nothing to train on"):
        train_classifier(data, tmp_path / "c", _config(), use_real=False)


def test_no_val_split_keeps_the_last_epoch(tmp_path: Path) -> None:
    no_val = _write(tmp_path / "data", split=lambda i: _split(i, with_val=False))
    result = train_classifier(no_val, tmp_path / "run", _config(epochs=2))
    assert result.selection == "last_epoch" and result.best_epoch == 2
    assert result.val_macro_auc is None and result.n_val == 0
    assert any("no 'val' split" in note for note in result.notes)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["val_macro_auc"] is None


def test_unknown_labels_make_it_multilabel_and_are_masked(tmp_path: Path) -> None:
    labels: dict[int, dict[str, int | str]] = {
        3: {"left": 0, "right": "uncertain"},  # train: masked out of the loss
        33: {"left": 0},  # test: right is missing, masked out of its AUC
    }
    data = _write(tmp_path / "data", labels=labels)
    result = train_classifier(data, tmp_path / "run", _config(epochs=8, patience=1))
    assert result.task == "multilabel"
    assert result.macro_auc is not None and result.macro_auc > 0.9
    with np.load(tmp_path / "run" / "predictions.npz") as p:
        y = p["y_true"]
        assert np.isnan(y[1, 1]) and np.isfinite(np.delete(y.ravel(), 3)).all()
        assert not np.allclose(p["scores"].sum(axis=1), 1.0)  # sigmoids, not a softmax
    # The easy task saturates the val AUC early; one epoch without improvement stops it.
    assert result.stopped_early and result.epochs_run == result.best_epoch + 1
    with pytest.raises(ValueError, match="'multiclass' needs exactly one positive"):
        train_classifier(data, tmp_path / "mc", _config(task="multiclass"))


def test_a_stopped_run_resumes_to_the_uninterrupted_result(data: Path, tmp_path: Path) -> None:
    config = _config(epochs=3, augment=True, balanced=True)
    whole = train_classifier(data, tmp_path / "whole", config)
    calls = 0

    def stop_in_second_epoch() -> bool:
        nonlocal calls
        calls += 1
        return calls == 5  # 3 steps per epoch: the second step of epoch 2

    with pytest.raises(Stopped):
        train_classifier(data, tmp_path / "cut", config, should_stop=stop_in_second_epoch)
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=False)["state"]["epoch"] == 1
    with pytest.raises(ValueError, match="another dataset, training images or config"):
        train_classifier(data, tmp_path / "cut", replace(config, epochs=4))
    resumed = train_classifier(data, tmp_path / "cut", config)
    assert resumed == whole
    for name in ("predictions.npz",):
        with np.load(tmp_path / "whole" / name) as a, np.load(tmp_path / "cut" / name) as b:
            np.testing.assert_array_equal(a["scores"], b["scores"])

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(s)["train_loss"] for s in lines]

    assert losses("cut") == losses("whole") and len(losses("cut")) == 3
    again = train_classifier(data, tmp_path / "cut", config)  # finished: just re-tested
    assert again == whole


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_at_32_px(arch: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(arch, 1, 3).eval()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model(images).shape == (2, 3)
        features = feature_module(model)(images)
    assert features.ndim == 2 and features.shape[0] == 2
    assert any(m is cam_layer(model) for m in model.modules())
    # The feature module is a view: it holds the model's own parameters.
    ids = {id(p) for p in model.parameters()}
    assert all(id(p) in ids for p in feature_module(model).parameters())


def test_grad_cam_on_the_cam_layer() -> None:
    from captum.attr import LayerGradCam

    torch.manual_seed(0)
    model = build_classifier("tiny-densenet", 1, 2).eval()
    cam = LayerGradCam(model, cam_layer(model)).attribute(torch.randn(2, 1, 32, 32), target=1)
    assert cam.shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arch": "resnet50"}, "arch must be one of"),
        ({"arch": "densenet121", "resolution": 16}, "at least 32 px"),
        ({"batch_size": 1}, "batch_size must be a whole number >= 2"),
        ({"epochs": 0}, "epochs must be"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"task": "regression"}, "task must be one of"),
        ({"augment": "yes"}, "augment must be true or false"),
        ({"device": "gpu:x"}, "not a torch device"),
    ],
)
def test_config_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**overrides)
