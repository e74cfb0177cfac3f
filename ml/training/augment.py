"""Differentiable augmentations shown to the discriminator, for GANs on small datasets.

Both are applied to real *and* generated images before D, and are differentiable w.r.t. the
images so the generator is trained through them:

* `diff_augment` - DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for
  Data-Efficient GAN Training"): every augmentation on every image, always.
* `AdaptiveAugment` - ADA (Karras et al. 2020, "Training Generative Adversarial Networks
  with Limited Data"): each augmentation applied per image with probability p, and p steered
  by an overfitting heuristic so that augmentations do not leak into the generated images.

Images are (B, C, H, W) in [-1, 1] (square for ADA's rotations); 0 is mid-grey and is the
fill value of cutout and of DiffAugment's translation. Radiographs are grayscale, so there is
no saturation or hue change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# DiffAugment's defaults (Zhao et al. 2020, section 3 and their released policy):
# translation by up to 1/8 of the image, cutout of a square half the image's side.
DIFF_TRANSLATION = 0.125
DIFF_CUTOUT = 0.5
_DIFF_ORDER = ("brightness", "contrast", "translation", "cutout")
_ALIASES = {"color": ("brightness", "contrast")}


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, *, reflect: bool) -> torch.Tensor:
    """Move each image by integer (dy[b], dx[b]) pixels; the uncovered border is either
    mirrored or zero. Implemented by indexing, so gradients reach every source pixel."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - dy[:, None]  # (B, H) source rows
    cols = torch.arange(w, device=x.device)[None, :] - dx[:, None]
    if reflect:
        rows = _reflect(rows, h)
        cols = _reflect(cols, w)
    keep = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = x.permute(0, 2, 3, 1)[bi, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None]]
    out = out.permute(0, 3, 1, 2)
    return out if reflect else out * keep[:, None].to(x.dtype)


def _reflect(idx: torch.Tensor, n: int) -> torch.Tensor:
    idx = idx.abs()
    return torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)


def _cutout_mask(x: torch.Tensor, size: float, apply: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask that is 0 inside one random square of side `size` * image per
    selected image (centre anywhere, clipped at the border) and 1 elsewhere."""
    b, _, h, w = x.shape
    sh, sw = int(h * size + 0.5), int(w * size + 0.5)
    cy = torch.randint(0, h, (b,), device=x.device)
    cx = torch.randint(0, w, (b,), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :] - (cy - sh // 2)[:, None]
    xs = torch.arange(w, device=x.device)[None, :] - (cx - sw // 2)[:, None]
    inside = ((ys >= 0) & (ys < sh))[:, :, None] & ((xs >= 0) & (xs < sw))[:, None, :]
    inside = inside & apply[:, None, None]
    return (~inside)[:, None].to(x.dtype)


def _image_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3), keepdim=True)


def _policy(policy: str) -> set[str]:
    names: set[str] = set()
    for raw in policy.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        expanded = _ALIASES.get(name, (name,))
        unknown = [n for n in expanded if n not in _DIFF_ORDER]
        if unknown:
            raise ValueError(f"unknown DiffAugment op {name!r}; known: {', '.join(_DIFF_ORDER)}")
        names.update(expanded)
    return names


def diff_augment(
    x: torch.Tensor, policy: str = "translation,cutout,brightness,contrast"
) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020) on a batch; random per image, drawn from torch's RNG.

    Ops run in a fixed order whatever the policy string's order: colour first, then
    translation, then cutout (as in the paper), so a cut-out square stays mid-grey.
    Brightness adds U(-0.5, 0.5); contrast scales the deviation from the image mean by
    U(0.5, 1.5). "color" is accepted for brightness + contrast (no saturation: grayscale).
    """
    ops = _policy(policy)
    b = x.shape[0]
    if "brightness" in ops:
        x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if "contrast" in ops:
        mean = _image_mean(x)
        x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean
    if "translation" in ops:
        s = int(x.shape[2] * DIFF_TRANSLATION + 0.5)
        dy = torch.randint(-s, s + 1, (b,), device=x.device)
        dx = torch.randint(-s, s + 1, (b,), device=x.device)
        x = _shift(x, dy, dx, reflect=False)
    if "cutout" in ops:
        x = x * _cutout_mask(x, DIFF_CUTOUT, torch.ones(b, dtype=torch.bool, device=x.device))
    return x


def overfitting_rt(real_logits: torch.Tensor) -> float:
    """ADA's overfitting heuristic r_t = E[sign(D(x_real))] (Karras et al. 2020, eq. 1);
    average it over the images seen between two `AdaptiveAugment.update` calls."""
    return float(torch.sign(real_logits.detach()).mean())


class AdaptiveAugment:
    """ADA (Karras et al. 2020): x-flip, 90-degree rotations, integer translation, isotropic
    scaling, brightness, contrast and cutout, each applied to each image with probability p.

    Magnitudes follow the paper's appendix B: translation U(-0.125, 0.125) of the image
    (rounded to pixels, reflect padding), scale lognormal(0, (0.2 ln 2)^2), brightness
    N(0, 0.2^2), contrast lognormal(0, (0.5 ln 2)^2) about the image mean, cutout of half the
    side. p starts at 0; `update` moves it by sign(r_t - target) * n_images / (ada_kimg * 1000),
    so p can go from 0 to 1 in `ada_kimg` thousand images (500 in the paper; target 0.6).
    """

    def __init__(
        self,
        *,
        target: float = 0.6,
        ada_kimg: float = 500.0,
        p: float = 0.0,
        scaling: bool = True,
    ) -> None:
        if ada_kimg <= 0:
            raise ValueError("ada_kimg must be positive")
        self.target = target
        self.ada_kimg = ada_kimg
        self.scaling = scaling
        self.p = self._clamp(p)

    @staticmethod
    def _clamp(p: float) -> float:
        # p stays in [0, 1): at p = 1 every image would be augmented and nothing would tell
        # the generator which orientation or brightness is the real one.
        return min(max(float(p), 0.0), math.nextafter(1.0, 0.0))

    def update(self, rt: float, n_images: int) -> float:
        """Step p after `n_images` images whose heuristic averaged `rt`; returns the new p."""
        direction = (rt > self.target) - (rt < self.target)
        self.p = self._clamp(self.p + direction * n_images / (self.ada_kimg * 1000.0))
        return self.p

    def state_dict(self) -> dict[str, float]:
        return {"p": self.p, "target": self.target, "ada_kimg": self.ada_kimg}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p = self._clamp(state["p"])
        self.target = float(state.get("target", self.target))
        self.ada_kimg = float(state.get("ada_kimg", self.ada_kimg))

    def _chosen(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape[0], device=x.device) < self.p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0.0:
            return x
        b, _, h, w = x.shape
        if h != w:
            raise ValueError("ADA's 90-degree rotations need square images")
        dev, one = x.device, torch.ones(b, 1, 1, 1, device=x.device, dtype=x.dtype)

        def pick(mask: torch.Tensor, changed: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
            return torch.where(mask[:, None, None, None], changed, same)

        x = pick(self._chosen(x), x.flip(3), x)
        # Rotation by k * 90 degrees, k uniform in {0, 1, 2, 3} for the chosen images.
        k = torch.randint(0, 4, (b,), device=dev) * self._chosen(x)
        for turns in (1, 2, 3):
            x = pick(k == turns, torch.rot90(x, turns, dims=(2, 3)), x)
        t = (torch.rand(b, 2, device=dev) * 2 - 1) * 0.125 * h
        t = torch.round(t).long() * self._chosen(x)[:, None]
        x = _shift(x, t[:, 0], t[:, 1], reflect=True)
        if self.scaling:
            chosen = self._chosen(x)
            if bool(chosen.any()):
                s = torch.exp2(torch.randn(b, device=dev) * 0.2).to(x.dtype)
                theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
                theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s  # sampling grid shrinks to zoom in
                grid = F.affine_grid(theta, list(x.shape), align_corners=False)
                scaled = F.grid_sample(
                    x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
                )
                x = pick(chosen, scaled, x)
        brightness = torch.randn(b, 1, 1, 1, device=dev, dtype=x.dtype) * 0.2
        x = x + brightness * pick(self._chosen(x), one, one * 0)
        contrast = torch.exp2(torch.randn(b, 1, 1, 1, device=dev, dtype=x.dtype) * 0.5)
        contrast = pick(self._chosen(x), contrast, one)
        mean = _image_mean(x)
        x = (x - mean) * contrast + mean
        return x * _cutout_mask(x, 0.5, self._chosen(x))
