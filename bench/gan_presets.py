"""Every GAN preset's schedule and memory floor, as the launch form computes them.

For each preset: the resolution its run ends at (progressive growing can end below the one it
states), the kimg after which it works at full resolution, the parameter counts of its
networks (built on the meta device) and the resident memory floor of `app.gans.estimates`
(weights, gradients, Adam moments, EMA generator; activations come on top). Run time is not
printed: the form only shows speeds measured by finished jobs.

    .venv/bin/python bench/gan_presets.py [--classes 2] [--channels 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.gans.estimates import (  # noqa: E402
    ModelSize,
    format_mb,
    memory_estimate,
    training_options,
)
from app.gans.options import PRESETS, gan_config  # noqa: E402
from ml.networks.gan_sizes import gan_sizes  # noqa: E402
from ml.training.gan_config import final_resolution, kimg_to_full_resolution  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=1)
    args = parser.parse_args()
    print("preset | arch | px -> ends at | kimg (full px from) | batch | G + D params | memory")
    for name, preset in PRESETS.items():
        config = gan_config({}, preset=name, resolutions=(int(preset["resolution"]),))
        options = training_options(config, args.channels)
        size = ModelSize(**gan_sizes(config.arch, config.resolution, args.classes, options))
        memory = memory_estimate(size, ema=bool(config.ema_kimg))
        print(
            f"{name} | {config.arch} | {config.resolution} -> {final_resolution(config)} | "
            f"{config.kimg:g} ({kimg_to_full_resolution(config):g}) | {config.batch_size} | "
            f"{size.g_params:,} + {size.d_params:,} | {format_mb(memory.total)}"
        )


if __name__ == "__main__":
    main()
