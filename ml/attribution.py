"""Attribution maps for image classifiers: where does a model look, and do two models agree?

Used to compare a classifier trained on real images with one trained on synthetic images on
the same inputs. Models take (N, C, H, W) floats in [-1, 1] and return (N, L) logits; a
target is a logit index. Three captum methods:

- Integrated gradients (Sundararajan et al. 2017, "Axiomatic attribution for deep networks"):
  path integral of gradients from a baseline (default: the black image, -1) to the input.
  Signed; its completeness property (attributions sum to f(x) - f(baseline)) is checked by
  captum's convergence delta, returned so a caller can flag too few `n_steps`.
- Grad-CAM (Selvaraju et al. 2017): gradient-weighted activations of one conv layer, ReLU'd
  and upsampled to the input size. Coarse (the layer's resolution) and non-negative.
- Occlusion (Zeiler & Fergus 2014): drop in the target logit when a square window is replaced
  by the baseline value. Model-agnostic but costs one forward pass per window position.

`overlay_png` renders a map over its image for the dashboards; `compare_maps` and
`summarise_pair` quantify agreement between two models' maps (rank correlation and top-pixel
overlap of |attribution|).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion
from PIL import Image
from scipy import stats

METHODS = ("integrated_gradients", "grad_cam", "occlusion")


@dataclass(frozen=True)
class Attribution:
    """Maps for N images. `maps` is (N, H, W) float32: IG summed over channels, occlusion
    averaged over channels (its window covers all channels, so every channel holds the same
    value and a sum would only scale by C), Grad-CAM upsampled to (H, W)."""

    method: str
    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    delta: np.ndarray | None


# ---------------------------------------------------------------------------- attribution


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and parameters without requires_grad for the duration, restored afterwards.

    captum differentiates with torch.autograd.grad, which does not write .grad, but freezing
    also means no parameter gradients are built at all (memory) and a caller's training loop
    finds its model exactly as it left it.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


def _as_images(images: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    x = torch.as_tensor(images).detach()
    if x.ndim != 4 or x.shape[0] < 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (N, C, H, W) with C in (1, 3), got {tuple(x.shape)}")
    return x.to(dtype=dtype, device="cpu")


def _as_targets(targets: int | Sequence[int] | np.ndarray | torch.Tensor, n: int) -> np.ndarray:
    t = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets: expected {n} integer indices, got shape {t.shape} ({t.dtype})")
    return t.astype(np.int64)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _baseline_for(
    baseline: float | torch.Tensor, rows: slice, x: torch.Tensor
) -> float | torch.Tensor:
    """A scalar, a (C, H, W) / (1, C, H, W) image for all inputs, or an (N, C, H, W) batch."""
    if not isinstance(baseline, torch.Tensor):
        return float(baseline)
    b = baseline.detach().to(dtype=x.dtype, device=x.device)
    if b.ndim == 3:
        b = b.unsqueeze(0)
    if b.ndim != 4 or b.shape[1:] != x.shape[1:]:
        raise ValueError(f"baseline: expected a scalar or images of shape {tuple(x.shape[1:])}")
    if b.shape[0] == 1:
        return b.expand_as(x)
    return b[rows]


def _scores(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    with torch.no_grad():
        out = [model(x[rows].to(device)).detach().cpu() for rows in _chunks(len(x), batch_size)]
    logits = torch.cat(out)
    if logits.ndim != 2 or logits.shape[0] != len(x):
        raise ValueError(f"model: expected (N, L) logits, got {tuple(logits.shape)}")
    return logits


def _integrated_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    baseline: float | torch.Tensor,
    n_steps: int,
    batch_size: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    ig = IntegratedGradients(model)
    # batch_size bounds the rows of one forward pass; IG expands each image n_steps times, so
    # take as many images per call as fit and let captum split the steps (it needs >= 2 steps
    # per image per pass, hence the floor of 2 * images).
    per_call = max(1, batch_size // n_steps)
    maps, deltas = [], []
    for rows in _chunks(len(x), per_call):
        xi = x[rows].to(device)
        attr, delta = ig.attribute(
            xi,
            baselines=_baseline_for(baseline, rows, xi),
            target=targets[rows].to(device),
            n_steps=n_steps,
            internal_batch_size=max(batch_size, 2 * len(xi)),
            return_convergence_delta=True,
        )
        maps.append(attr.sum(dim=1).detach().cpu())
        deltas.append(delta.detach().cpu())
    return torch.cat(maps), torch.cat(deltas)


def _grad_cam(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    layer: torch.nn.Module,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    cam = LayerGradCam(model, layer)
    size = tuple(x.shape[2:])
    maps = []
    for rows in _chunks(len(x), batch_size):
        attr = cam.attribute(
            x[rows].to(device), target=targets[rows].to(device), relu_attributions=True
        )
        if attr.ndim != 4:
            raise ValueError(
                "grad_cam: the layer's output must be a (N, C, h, w) feature map, "
                f"got {tuple(attr.shape)}; pick a convolutional layer"
            )
        # Bilinear keeps the coarse map smooth on screen; interpolating non-negative values
        # stays non-negative, the clamp only removes round-off.
        up = LayerAttribution.interpolate(attr, size, interpolate_mode="bilinear")
        maps.append(up[:, 0].clamp_min(0).detach().cpu())
    return torch.cat(maps)


def _occlusion(
    model: torch.nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    baseline: float | torch.Tensor,
    window: int,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    occ = Occlusion(model)
    c, h, w = x.shape[1:]
    if not 1 <= window <= min(h, w):
        raise ValueError(f"occlusion: window must be in [1, {min(h, w)}], got {window}")
    stride = max(1, window // 2)
    positions = (-(-(h - window) // stride) + 1) * (-(-(w - window) // stride) + 1)
    # Rows per forward pass = images * perturbations_per_eval; keep it within batch_size.
    per_call = max(1, batch_size // positions)
    maps = []
    for rows in _chunks(len(x), per_call):
        xi = x[rows].to(device)
        attr = occ.attribute(
            xi,
            sliding_window_shapes=(c, window, window),
            strides=(c, stride, stride),
            baselines=_baseline_for(baseline, rows, xi),
            target=targets[rows].to(device),
            perturbations_per_eval=max(1, batch_size // len(xi)),
        )
        maps.append(attr.mean(dim=1).detach().cpu())
    return torch.cat(maps)


def _check_layer(model: torch.nn.Module, layer: torch.nn.Module | None) -> torch.nn.Module:
    if layer is None:
        raise ValueError(
            "grad_cam needs `layer`: the conv layer (a module of the model) to explain"
        )
    if not any(m is layer for m in model.modules()):
        raise ValueError("grad_cam: `layer` is not a submodule of the model")
    return layer


def attribute(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    targets: int | Sequence[int] | np.ndarray | torch.Tensor,
    method: str = "integrated_gradients",
    *,
    baseline: float | torch.Tensor = -1.0,
    n_steps: int = 64,
    layer: torch.nn.Module | None = None,
    window: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> Attribution:
    """Attribution maps of `model`'s `targets` logits for (N, C, H, W) `images` in [-1, 1].

    `baseline` is the "absent" input for integrated gradients and the fill value for
    occlusion (-1: black); a tensor may give one image or one per input. `layer` is required
    for Grad-CAM. `window` is the occlusion square (default max(1, min(H, W) // 8), stride
    half the window). `batch_size` bounds the rows of any one forward pass (memory), not the
    number of images. The model must already be on `device`; it runs in eval mode without
    parameter gradients, and its mode and requires_grad flags are restored afterwards.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known: {', '.join(METHODS)}")
    if n_steps < 2 or batch_size < 1:
        raise ValueError("n_steps must be >= 2 and batch_size >= 1")
    dev = torch.device(device)
    x = _as_images(images, _model_dtype(model))
    t_np = _as_targets(targets, len(x))
    batched = isinstance(baseline, torch.Tensor) and baseline.ndim == 4
    if batched and baseline.shape[0] not in (1, len(x)):
        raise ValueError(f"baseline: expected 1 or {len(x)} images, got {baseline.shape[0]}")
    if method == "grad_cam":
        layer = _check_layer(model, layer)
    with _frozen(model):
        logits = _scores(model, x, batch_size, dev)
        if t_np.min() < 0 or t_np.max() >= logits.shape[1]:
            raise ValueError(f"targets must be in [0, {logits.shape[1]}), got {t_np.tolist()}")
        t = torch.from_numpy(t_np)
        delta = None
        if method == "integrated_gradients":
            maps, d = _integrated_gradients(model, x, t, baseline, n_steps, batch_size, dev)
            delta = d.numpy()
        elif method == "grad_cam":
            maps = _grad_cam(model, x, t, layer, batch_size, dev)
        else:
            win = window if window is not None else max(1, min(x.shape[2:]) // 8)
            maps = _occlusion(model, x, t, baseline, win, batch_size, dev)
    return Attribution(
        method=method,
        maps=maps.numpy().astype(np.float32),
        targets=t_np,
        scores=logits[torch.arange(len(x)), t].numpy(),
        delta=delta,
    )


# ---------------------------------------------------------------------------- rendering

# Sequential map for magnitudes: dark red -> red -> orange -> yellow -> pale yellow, so the
# strongest evidence is the brightest and stands out on a grey radiograph.
_HEAT_ANCHORS = np.array(
    [[96, 0, 0], [200, 20, 0], [255, 110, 0], [255, 210, 0], [255, 255, 170]], dtype=np.float64
)
# Diverging map for signed maps: blue (negative) -> light grey (zero) -> orange/red (positive).
_SIGNED_ANCHORS = np.array(
    [[40, 90, 255], [120, 190, 255], [235, 235, 235], [255, 150, 0], [220, 20, 0]],
    dtype=np.float64,
)


def _lookup(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Linear interpolation between equally spaced anchor colours, for values in [0, 1]."""
    pos = np.clip(values, 0.0, 1.0) * (len(anchors) - 1)
    lo = np.minimum(pos.astype(np.int64), len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1.0 - frac) + anchors[lo + 1] * frac
    return np.round(rgb).astype(np.uint8)


def heat_colours(values: np.ndarray, *, signed: bool = False) -> np.ndarray:
    """(...,) values -> (..., 3) uint8 RGB. Unsigned: [0, 1] on the red/yellow heat map.
    Signed: [-1, 1] on the blue-grey-red diverging map. Values outside are clipped."""
    v = np.asarray(values, dtype=np.float64)
    if signed:
        return _lookup((v + 1.0) / 2.0, _SIGNED_ANCHORS)
    return _lookup(v, _HEAT_ANCHORS)


def _base(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 255]: the image the map is drawn over, in its own colours."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 3:
        # A colour image is shown in colour (as the dataset page shows it, channels as R, G,
        # B): a lesion's colour is often what the map should be read against.
        img = img.transpose(1, 2, 0)
    elif img.ndim == 3:
        # The mean equals the first channel for grey stored as C copies.
        img = np.repeat(img.mean(axis=0)[..., None], 3, axis=-1)
    elif img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    else:
        raise ValueError(f"image: expected (H, W) or (C, H, W), got {img.shape}")
    return (np.clip(img, -1.0, 1.0) + 1.0) * 127.5


def overlay_png(
    image: np.ndarray,
    heat: np.ndarray,
    *,
    scale: float | None = None,
    alpha: float = 0.5,
    size: int | None = None,
    signed: bool = False,
) -> bytes:
    """PNG (RGB, no metadata) of `heat` (H, W) over `image` ((H, W) or (C, H, W) in [-1, 1];
    a 3-channel image is drawn in its colours, any other channel count as the channels' mean).

    By default the map's magnitude |heat| is shown on the red/yellow heat map, for every method
    (IG's sign is dropped: regions that count against the class light up too, matching
    `compare_maps`, which also ranks |heat|). `signed=True` shows IG's sign instead on a
    blue (against) to red (for) diverging map. `scale` is the |value| drawn at full intensity;
    pass the same scale for two models' maps so the pictures compare (default: this map's
    99th percentile of |heat|). The colour is blended in proportion to intensity, so
    zero-attribution pixels show the plain image; `alpha` is the blend at full intensity.
    `size` enlarges the longer side to `size` pixels with nearest-neighbour sampling, which
    keeps pixels honest (no invented detail) for small 32-64 px images.
    """
    base = _base(image)
    h = np.asarray(heat, dtype=np.float64)
    if h.shape != base.shape[:2]:
        raise ValueError(f"heat {h.shape} does not match image {base.shape[:2]}")
    if not np.isfinite(h).all():
        raise ValueError("heat contains NaN or infinity")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    if scale is None:
        scale = float(np.percentile(np.abs(h), 99))
    if scale <= 0:
        # An all-zero map (or scale 0): nothing to show rather than a division by zero.
        scale = 1.0
    norm = np.clip(h / scale, -1.0, 1.0)
    colour = heat_colours(norm if signed else np.abs(norm), signed=signed).astype(np.float64)
    weight = (alpha * np.abs(norm))[..., None]
    rgb = base * (1.0 - weight) + colour * weight
    out = Image.fromarray(np.round(rgb).clip(0, 255).astype(np.uint8), mode="RGB")
    if size is not None:
        if size < 1:
            raise ValueError("size must be >= 1")
        factor = size / max(out.size)
        target = (max(1, round(out.size[0] * factor)), max(1, round(out.size[1] * factor)))
        out = out.resize(target, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- comparison


def _top_mask(values: np.ndarray, k: int) -> np.ndarray:
    # Stable sort so ties (e.g. the zeros of a Grad-CAM map) are broken the same way each time.
    order = np.argsort(-values, kind="stable")[:k]
    mask = np.zeros(values.shape, dtype=bool)
    mask[order] = True
    return mask


def compare_maps(
    a: np.ndarray, b: np.ndarray, *, top_fraction: float = 0.1
) -> dict[str, float | None]:
    """Agreement of two (H, W) maps of the same image, both on |value|.

    "spearman": Spearman rank correlation of |a| and |b| over pixels; None when either map is
    constant (e.g. an all-zero Grad-CAM), where a rank correlation is undefined.
    "top_iou": intersection over union of the top `top_fraction` pixels of |a| and of |b|
    (at least one pixel each).
    """
    x = np.abs(np.asarray(a, dtype=np.float64))
    y = np.abs(np.asarray(b, dtype=np.float64))
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"expected two (H, W) maps of one shape, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("maps contain NaN or infinity")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError("top_fraction must be in (0, 1]")
    x, y = x.ravel(), y.ravel()
    rho = None
    if np.ptp(x) > 0 and np.ptp(y) > 0:
        rho = float(stats.spearmanr(x, y).statistic)
    k = max(1, round(top_fraction * x.size))
    inter = int(np.count_nonzero(_top_mask(x, k) & _top_mask(y, k)))
    return {"spearman": rho, "top_iou": inter / (2 * k - inter)}


def summarise_pair(
    maps_a: np.ndarray | Attribution,
    maps_b: np.ndarray | Attribution,
    *,
    top_fraction: float = 0.1,
) -> dict[str, float | int | None]:
    """Mean `compare_maps` over N image pairs ((N, H, W) each, or two Attributions).

    Returns "spearman" (mean over images where it is defined, None if none is), "top_iou",
    "n" and "n_spearman_undefined".
    """
    a = np.asarray(maps_a.maps if isinstance(maps_a, Attribution) else maps_a)
    b = np.asarray(maps_b.maps if isinstance(maps_b, Attribution) else maps_b)
    if a.ndim != 3 or a.shape != b.shape or a.shape[0] < 1:
        raise ValueError(f"expected two (N, H, W) stacks of one shape, got {a.shape}, {b.shape}")
    pairs = [compare_maps(x, y, top_fraction=top_fraction) for x, y in zip(a, b, strict=True)]
    rhos = [p["spearman"] for p in pairs if p["spearman"] is not None]
    return {
        "spearman": float(np.mean(rhos)) if rhos else None,
        "top_iou": float(np.mean([p["top_iou"] for p in pairs])),
        "n": len(pairs),
        "n_spearman_undefined": len(pairs) - len(rhos),
    }
