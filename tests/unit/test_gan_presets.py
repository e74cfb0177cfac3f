"""GAN presets reach the resolution they state (issue 17: seed000-progan-32 ended at 16 px) and
the progressive presets at 128, 256 and 512 px get the form's memory and run-time estimate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from gan_fixtures import ConstantFeatures, write_two_sided

from app.gans.estimates import (
    Measurement,
    ModelSize,
    memory_estimate,
    memory_lines,
    run_time_lines,
    training_options,
)
from app.gans.options import PRESET_LABELS, PRESETS, gan_config
from ml.networks.gan import build_gan
from ml.networks.gan_sizes import gan_sizes
from ml.training.early_stopping import FidPatience
from ml.training.gan import train_gan
from ml.training.gan_config import (
    GanConfig,
    final_resolution,
    kimg_to_full_resolution,
    progressive_kimg,
    progressive_schedule,
)

NEW_PROGRESSIVE = ("progan-128", "progan-256", "progan-512")


def _preset(name: str) -> GanConfig:
    resolution = int(PRESETS[name]["resolution"])
    return gan_config({}, preset=name, resolutions=(resolution,))


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_ends_at_its_stated_resolution(name: str) -> None:
    config = _preset(name)
    assert final_resolution(config) == config.resolution
    assert PRESET_LABELS.get(name), f"{name} has no label for the form"
    if config.arch == "progan":
        # Trained at full resolution for a while, not merely faded in at the very end.
        per_phase = config.arch_options.get("kimg_per_phase", 800.0)
        assert config.kimg - kimg_to_full_resolution(config) >= per_phase


def test_the_old_seed000_schedule_ended_at_16_px() -> None:
    old = replace(_preset("seed000-progan-32"), arch_options={})  # 800 kimg per phase
    assert final_resolution(old) == 16
    assert progressive_schedule(old.kimg, 800.0, 4) == (2, 0.75)
    assert kimg_to_full_resolution(old) == 4800.0


def test_the_schedule_is_the_one_the_network_follows() -> None:
    """The pure schedule drives the real progressive networks: the preset's options put the
    generator at 32 px by the end, the paper's 800 kimg per phase at 16."""
    config = _preset("seed000-progan-32")
    small = {"base_channels": 64, "max_channels": 8}
    for options, expected in ((config.arch_options, 32), ({}, 16)):
        models = build_gan("progan", 32, 2, **small, **options)
        assert models.schedule is not None
        models.schedule(config.kimg)
        assert models.generator.current_resolution == expected
        assert final_resolution(replace(config, arch_options=dict(options))) == expected


def test_progressive_lengths() -> None:
    # 4 -> r px: one phase at 4 px, fade-in + stabilisation per level (2 n - 1 phases).
    assert progressive_kimg(32) == 7 * 800.0
    assert [progressive_kimg(r) for r in (128, 256, 512)] == [8800.0, 10400.0, 12000.0]
    full = GanConfig(arch="progan", resolution=512, kimg=12000.0)
    assert kimg_to_full_resolution(full) == 11200.0 and final_resolution(full) == 512
    assert final_resolution(replace(full, kimg=11199.0)) == 512  # still fading in
    assert final_resolution(replace(full, kimg=10399.0)) == 256
    assert final_resolution(GanConfig(arch="stylegan2", resolution=256, kimg=1.0)) == 256


def test_a_preset_switched_to_another_family_drops_its_builder_options() -> None:
    config = gan_config({"arch": "dcgan"}, preset="seed000-progan-32", resolutions=(32,))
    assert config.arch == "dcgan" and config.arch_options == {}
    build_gan("dcgan", 32, 2, **config.arch_options)  # kimg_per_phase would be refused


@pytest.mark.parametrize("name", NEW_PROGRESSIVE)
def test_new_progressive_presets_get_memory_and_run_time_estimates(name: str) -> None:
    config = _preset(name)
    assert config.arch == "progan" and config.fid_patience == 0
    # What `estimates.model_size` asks its child process (test_gan_estimates checks they agree).
    size = ModelSize(**gan_sizes(config.arch, config.resolution, 2, training_options(config, 1)))
    memory = memory_estimate(size, ema=bool(config.ema_kimg))
    headline, parts = memory_lines(memory)
    assert memory.total > 0 and memory.ema > 0
    assert headline.startswith("at least ") and len(parts) == 4
    (unmeasured,) = run_time_lines(config.arch, config.resolution, config.kimg, [])
    assert unmeasured.startswith(f"No measured run of progan at {config.resolution} px yet")
    (measured,) = run_time_lines(
        config.arch, config.resolution, config.kimg, [Measurement(1, 500.0, "cuda")]
    )
    assert measured.startswith("about ") and "on cuda" in measured


def test_patience_counts_only_from_full_resolution() -> None:
    rule = FidPatience(patience=2, start_kimg=10.0)
    # A plateau while growing does not stop the run; the same plateau at full size does.
    assert [rule.update(5.0, k) for k in (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert rule.best_kimg == 2.0
    # Checkpoints written before the field existed resume with patience counted from 0 kimg.
    old = {"patience": 2, "min_delta": 0.0, "best": 5.0, "best_kimg": 2.0, "stale": 1}
    assert FidPatience.from_state(old).start_kimg == 0.0


def test_a_progressive_run_on_a_fid_plateau_grows_before_it_stops(tmp_path: Path) -> None:
    """Constant FID from the first snapshot: the run stops 2 snapshots after reaching 16 px
    (0.064 kimg: 4 phases of 0.016), not 2 snapshots after its first."""
    data = write_two_sided(tmp_path / "data")
    extractor = tmp_path / "flat.pt"
    torch.jit.script(ConstantFeatures()).save(str(extractor))
    options = {"base_channels": 128, "max_channels": 16, "kimg_per_phase": 0.016}
    config = GanConfig(
        arch="progan",
        resolution=16,
        batch_size=8,
        kimg=1.0,
        tick_kimg=0.016,
        snapshot_ticks=1,
        fid_features=str(extractor),
        fid_images=16,
        fid_patience=2,
        arch_options=options,
    )
    assert kimg_to_full_resolution(config) == pytest.approx(0.064)
    result = train_gan(data, tmp_path / "run", config)
    assert result.stopped_early and result.kimg == pytest.approx(0.080)
    assert final_resolution(replace(config, kimg=result.kimg)) == 16
