"""Image classifiers for the utility benchmark (train on real / synthetic, test on real).

All are MONAI networks built from scratch (never downloaded weights), taking (B, C, R, R)
images in [-1, 1] and returning (B, n_outputs) logits:

* ``densenet121``     - DenseNet-121 (Huang et al. 2017), the CheXNet backbone; R >= 32.
* ``efficientnet-b0`` - EfficientNet-B0 (Tan & Le 2019); R >= 32 (five stride-2 stages).
* ``tiny-densenet``   - a DenseNet with 2 blocks of 2 layers and a few channels: it trains
  on 16-32 px images in seconds on a CPU, for tests and smoke runs only.

`feature_module` gives the pooled penultimate features (for FID-style metrics and for the
domain-classifier loss of a GAN) and `cam_layer` the layer whose activations Grad-CAM uses.
Both are views of the same modules, so they always agree with the trained weights.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet, DenseNet121, EfficientNetBN
from monai.networks.nets.efficientnet import EfficientNet
from torch import nn

from ml.networks.classifier_archs import ARCHS, MIN_RESOLUTION

# ReLU not in place: an in-place op on a hooked activation breaks Grad-CAM's backward hooks.
_ACT = ("relu", {"inplace": False})

__all__ = ["ARCHS", "MIN_RESOLUTION", "build_classifier", "cam_layer", "feature_module"]


def build_classifier(arch: str, in_channels: int, n_outputs: int) -> nn.Module:
    """A freshly initialised classifier; seed torch first for reproducible weights."""
    if arch not in ARCHS:
        raise ValueError(f"unknown classifier {arch!r}; choose one of {', '.join(ARCHS)}")
    if in_channels < 1 or n_outputs < 1:
        raise ValueError(f"in_channels and n_outputs must be >= 1, got {in_channels}, {n_outputs}")
    if arch == "densenet121":
        return DenseNet121(
            spatial_dims=2, in_channels=in_channels, out_channels=n_outputs, act=_ACT
        )
    if arch == "efficientnet-b0":
        return EfficientNetBN(
            "efficientnet-b0",
            pretrained=False,
            progress=False,
            spatial_dims=2,
            in_channels=in_channels,
            num_classes=n_outputs,
        )
    return DenseNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=n_outputs,
        init_features=8,
        growth_rate=4,
        block_config=(2, 2),
        bn_size=2,
        act=_ACT,
    )


class _DenseNetFeatures(nn.Module):
    """DenseNet up to the global average pool: the input of its final linear layer."""

    def __init__(self, model: DenseNet) -> None:
        super().__init__()
        self.features = model.features
        self.relu = model.class_layers.relu
        self.pool = model.class_layers.pool

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.features(images))).flatten(1)


class _EfficientNetFeatures(nn.Module):
    """EfficientNet's forward without dropout and the final linear layer."""

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m._swish(m._bn0(m._conv_stem(m._conv_stem_padding(images))))
        x = m._blocks(x)
        x = m._swish(m._bn1(m._conv_head(m._conv_head_padding(x))))
        return m._avg_pooling(x).flatten(1)


def feature_module(model: nn.Module) -> nn.Module:
    """(B, C, R, R) images -> (B, D) pooled penultimate features, sharing `model`'s weights.

    Traceable with `torch.jit.trace`; for an EfficientNet call `model.set_swish(False)` first
    (MONAI's memory-efficient swish is a custom autograd function that TorchScript cannot
    export).
    """
    if isinstance(model, DenseNet):
        return _DenseNetFeatures(model)
    if isinstance(model, EfficientNet):
        return _EfficientNetFeatures(model)
    raise TypeError(f"no feature module for {type(model).__name__}")


def cam_layer(model: nn.Module) -> nn.Module:
    """The layer whose output is the last convolutional feature map, for Grad-CAM.

    The final normalisation of the last block (DenseNet's ``norm5``, EfficientNet's head
    ``_bn1``): the last module applied once to the full-depth feature map. EfficientNet's
    swish after it is not a layer of its own (one module object is reused at the stem too),
    so a hook there would fire twice.
    """
    if isinstance(model, DenseNet):
        return model.features[-1]
    if isinstance(model, EfficientNet):
        return model._bn1
    raise TypeError(f"no Grad-CAM layer for {type(model).__name__}")
