"""DiffAugment and ADA: identity when off, shapes, gradients, p control, determinism."""

from __future__ import annotations

import pytest
import torch

from ml.training.augment import AdaptiveAugment, diff_augment, overfitting_rt


def _images(batch: int = 6, size: int = 16) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(batch, 1, size, size) * 2 - 1


@pytest.mark.parametrize(
    "policy", ["translation,cutout,brightness,contrast", "translation", "cutout", "color"]
)
def test_diff_augment_shapes_gradients_and_change(policy: str) -> None:
    x = _images().requires_grad_(True)
    y = diff_augment(x, policy)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diff_augment_deterministic_under_seed() -> None:
    x = _images()
    torch.manual_seed(7)
    a = diff_augment(x)
    torch.manual_seed(7)
    b = diff_augment(x)
    torch.manual_seed(8)
    c = diff_augment(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_diff_augment_empty_policy_and_unknown_op() -> None:
    x = _images()
    assert diff_augment(x, "") is x
    with pytest.raises(ValueError, match="saturation"):
        diff_augment(x, "saturation")


def test_diff_translation_moves_content_and_pads_with_zero() -> None:
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    torch.manual_seed(0)
    y = diff_augment(x, "translation")
    assert torch.all(y.sum(dim=(1, 2, 3)) == 1.0)  # a shift of <= 2 pixels keeps the dot
    assert (y[:, 0, 8, 8] == 0).any()


def test_ada_identity_at_p_zero() -> None:
    ada = AdaptiveAugment()
    x = _images()
    assert ada.p == 0.0 and ada(x) is x


@pytest.mark.parametrize("p", [0.5, 0.99])
def test_ada_shapes_and_gradients(p: float) -> None:
    torch.manual_seed(0)
    ada = AdaptiveAugment(p=p)
    x = _images(batch=8).requires_grad_(True)
    y = ada(x)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.allclose(y, x)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_ada_without_scaling() -> None:
    torch.manual_seed(0)
    y = AdaptiveAugment(p=0.9, scaling=False)(_images())
    assert y.shape == (6, 1, 16, 16)


def test_ada_p_follows_overfitting_heuristic() -> None:
    ada = AdaptiveAugment(ada_kimg=1.0)  # p from 0 to 1 in 1000 images
    assert ada.update(0.9, 100) == pytest.approx(0.1)
    assert ada.update(0.9, 300) == pytest.approx(0.4)
    assert ada.update(0.2, 100) == pytest.approx(0.3)
    assert ada.update(0.6, 100) == pytest.approx(0.3)  # at the target: unchanged
    assert ada.update(-1.0, 10_000) == 0.0  # clamped below
    ada.update(1.0, 10_000)
    assert 0.99 < ada.p < 1.0  # clamped below 1


def test_overfitting_rt() -> None:
    assert overfitting_rt(torch.tensor([2.0, 1.0, -3.0, 0.5])) == pytest.approx(0.5)


def test_ada_state_dict_round_trip() -> None:
    ada = AdaptiveAugment(ada_kimg=3.0, target=0.5)
    ada.update(1.0, 1234)
    state = ada.state_dict()
    fresh = AdaptiveAugment()
    fresh.load_state_dict(state)
    assert fresh.p == ada.p and fresh.target == 0.5 and fresh.ada_kimg == 3.0
    assert fresh.update(0.9, 7) == ada.update(0.9, 7)
