"""The classifier architectures by name, without importing torch or MONAI (form options)."""

ARCHS = ("densenet121", "efficientnet-b0", "tiny-densenet")
# Smallest input each network accepts: DenseNet-121 and EfficientNet-B0 downsample by 32.
MIN_RESOLUTION = {"densenet121": 32, "efficientnet-b0": 32, "tiny-densenet": 8}
