"""Attribution maps: IG completeness, Grad-CAM shape and sign, occlusion locality, rendering and
map comparison, on tiny random-weight nets (CPU, a few seconds)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ml.attribution import (
    METHODS,
    Attribution,
    attribute,
    compare_maps,
    heat_colours,
    overlay_png,
    summarise_pair,
)

SIZE = 16


class SmallNet(torch.nn.Module):
    """Two convs and a linear head. Tanh keeps the function smooth, so 64 Gauss-Legendre
    steps integrate the gradient path essentially exactly and completeness can be tight."""

    def __init__(self, channels: int = 1, classes: int = 3, act: type = torch.nn.Tanh) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.act = act()
        self.head = torch.nn.Linear(6 * (SIZE // 2) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.head(h.flatten(1))


class LeftHalfNet(torch.nn.Module):
    """Logits depend only on the left half of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(SIZE * SIZE // 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[..., : SIZE // 2].mean(dim=1).flatten(1))


def _net(dtype: torch.dtype = torch.float64, **kwargs: object) -> SmallNet:
    torch.manual_seed(0)
    return SmallNet(**kwargs).to(dtype)


def _images(n: int = 3, c: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, c, SIZE, SIZE, generator=g, dtype=dtype) * 2 - 1


def _no_grads(model: torch.nn.Module) -> bool:
    return all(p.grad is None for p in model.parameters())


def test_integrated_gradients_complete() -> None:
    model, x = _net(), _images()
    targets = np.array([0, 2, 1])
    result = attribute(model, x, targets, batch_size=64)
    assert result.method == "integrated_gradients"
    assert result.maps.shape == (3, SIZE, SIZE) and result.maps.dtype == np.float32
    with torch.no_grad():
        gap = model(x) - model(torch.full_like(x, -1.0))
    expected = gap[torch.arange(3), torch.from_numpy(targets)].numpy()
    np.testing.assert_allclose(result.maps.reshape(3, -1).sum(1), expected, rtol=1e-4, atol=1e-5)
    assert result.delta is not None and np.abs(result.delta).max() < 1e-6
    np.testing.assert_allclose(result.scores, model(x).detach()[torch.arange(3), targets].numpy())
    assert _no_grads(model)


def test_integrated_gradients_rgb_sums_channels_and_small_batches_agree() -> None:
    model, x = _net(channels=3), _images(n=2, c=3)
    big = attribute(model, x, 1, batch_size=256)
    small = attribute(model, x, 1, batch_size=8)  # one image per call, 8 steps per pass
    np.testing.assert_allclose(big.maps, small.maps, rtol=1e-6, atol=1e-8)
    assert big.maps.shape == (2, SIZE, SIZE)
    assert np.abs(big.delta).max() < 1e-6


def test_grad_cam_non_negative_maps_at_input_size() -> None:
    model, x = _net(act=torch.nn.ReLU), _images(n=2)
    result = attribute(model, x, [0, 1], "grad_cam", layer=model.conv2)
    assert result.maps.shape == (2, SIZE, SIZE)
    assert (result.maps >= 0).all() and result.delta is None
    assert _no_grads(model)


def test_grad_cam_needs_a_layer_of_the_model() -> None:
    model, x = _net(), _images(n=1)
    with pytest.raises(ValueError, match="layer"):
        attribute(model, x, 0, "grad_cam")
    with pytest.raises(ValueError, match="submodule"):
        attribute(model, x, 0, "grad_cam", layer=torch.nn.Conv2d(1, 1, 3))


def test_occlusion_is_local() -> None:
    torch.manual_seed(0)
    model = LeftHalfNet().double()
    x = _images(n=2, c=3)
    window = 4
    result = attribute(model, x, [0, 1], "occlusion", window=window, batch_size=32)
    assert result.maps.shape == (2, SIZE, SIZE) and result.delta is None
    # Windows reaching into the left half still change the logit; beyond their reach, nothing.
    right = result.maps[:, :, SIZE // 2 + window :]
    assert np.abs(right).max() < 1e-12
    assert np.abs(result.maps[:, :, : SIZE // 2]).max() > 1e-3
    assert _no_grads(model)


def test_model_state_is_restored() -> None:
    model, x = _net(), _images(n=1)
    model.train()
    model.conv1.weight.requires_grad_(False)
    for method in METHODS:
        attribute(model, x, 0, method, layer=model.conv2, n_steps=8)
    assert model.training
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert _no_grads(model)


def test_bad_arguments() -> None:
    model, x = _net(), _images(n=2)
    with pytest.raises(ValueError, match="known: integrated_gradients, grad_cam, occlusion"):
        attribute(model, x, 0, "saliency")
    with pytest.raises(ValueError, match="targets"):
        attribute(model, x, [0, 3])
    with pytest.raises(ValueError, match="targets"):
        attribute(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match="images"):
        attribute(model, x[0], 0)
    with pytest.raises(ValueError, match="baseline"):
        attribute(model, x, 0, baseline=torch.zeros(1, SIZE, 4))
    with pytest.raises(ValueError, match="baseline"):
        attribute(model, x, 0, baseline=torch.zeros(3, 1, SIZE, SIZE))


def _decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def test_overlay_png_size_mode_and_shared_scale() -> None:
    image = _images(n=1).numpy()[0]
    heat = np.zeros((SIZE, SIZE))
    heat[4:8, 4:8] = 1.0
    heat[10:12, 2:4] = -0.5
    plain = _decode(overlay_png(image, heat))
    assert plain.format == "PNG" and plain.mode == "RGB" and plain.size == (SIZE, SIZE)
    assert not {"parameters", "Software", "Comment"} & set(plain.info)
    big = _decode(overlay_png(image, heat, size=64))
    assert big.size == (64, 64)
    # A shared scale ten times larger draws the same map fainter.
    own = np.asarray(plain, dtype=int)
    shared = np.asarray(_decode(overlay_png(image, heat, scale=10.0)), dtype=int)
    assert not np.array_equal(own, shared)
    # Zero attribution leaves the grey image; a heat map tints the hot square red.
    grey = np.round((np.clip(image[0], -1, 1) + 1) * 127.5)
    np.testing.assert_array_equal(own[0, 0], [grey[0, 0]] * 3)
    assert (own[4:8, 4:8, 0] >= own[4:8, 4:8, 2]).all()
    signed = np.asarray(_decode(overlay_png(image, heat, signed=True)), dtype=int)
    assert (signed[10:12, 2:4, 2] > signed[10:12, 2:4, 0]).all()  # negative -> blue


def test_overlay_png_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay_png(np.zeros((3, SIZE, SIZE)), np.zeros((SIZE, 8)))


def test_heat_colours_endpoints() -> None:
    c = heat_colours(np.array([0.0, 1.0, 2.0]))
    assert c.shape == (3, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c[1], c[2])  # clipped
    assert c[1].sum() > c[0].sum()  # brighter when hotter
    s = heat_colours(np.array([-1.0, 1.0]), signed=True)
    assert s[0, 2] > s[0, 0] and s[1, 0] > s[1, 2]


def test_compare_maps_identical_and_disjoint() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(SIZE, SIZE))
    same = compare_maps(a, -a)  # magnitudes are compared
    assert same["spearman"] == pytest.approx(1.0) and same["top_iou"] == pytest.approx(1.0)
    left, right = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
    left[:, :4] = rng.uniform(1, 2, size=(SIZE, 4))
    right[:, -4:] = rng.uniform(1, 2, size=(SIZE, 4))
    apart = compare_maps(left, right, top_fraction=0.2)
    assert apart["top_iou"] == 0.0 and apart["spearman"] < 0
    assert compare_maps(np.zeros((4, 4)), a[:4, :4])["spearman"] is None


def test_summarise_pair_means() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, SIZE, SIZE))
    b = a.copy()
    b[2] = rng.normal(size=(SIZE, SIZE))
    summary = summarise_pair(a, b)
    assert summary["n"] == 3 and summary["n_spearman_undefined"] == 0
    assert 0.6 < summary["spearman"] < 1.0 and 0.6 < summary["top_iou"] < 1.0
    wrapped = Attribution("occlusion", a.astype(np.float32), np.zeros(3, int), np.zeros(3), None)
    assert summarise_pair(wrapped, a)["spearman"] == pytest.approx(1.0)
