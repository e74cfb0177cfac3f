"""Where an import's CPU time goes, per image: the image path against the rest of the pipeline.

bench/scale_import.py gives one per-core ratio (ours / raw) for a whole `prepare_dataset`.
This splits it, timed in one process over the same files (CPU time, so other load on the
machine matters little; figures are the median of `--repeats` rounds, interleaved):

* raw: the loop bench/scale_import.py calls raw (Pillow to float32 [0, 1], LANCZOS resize);
* decode_file: our per-file work alone: read, sha256, key, decode, square, quantise;
* prepare_dataset: the whole import (listing, decode_file, store, journal, splits).

decode_file / raw is the image path's own speed; prepare_dataset - decode_file is the cost of
everything else an import does per image.

    .venv/bin/python bench/import_split.py --images 2000 --fixture /tmp/scale
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_fixture import write_chexpert_tree, write_rsna_tree  # noqa: E402
from scale_import import raw_chunk  # noqa: E402

from ml.data.decode_pool import DecodeSettings, decode_file  # noqa: E402
from ml.data.formats import read_dataset  # noqa: E402
from ml.data.prepare import prepare_dataset  # noqa: E402

WRITERS = {"chexpert": write_chexpert_tree, "rsna": write_rsna_tree}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--format", default="chexpert", choices=sorted(WRITERS))
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fixture", type=Path, help="keep the tree here and reuse it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        fixture = args.fixture or Path(tmp) / "fixture"
        source = fixture / f"{args.format}-{args.images}"  # the layout scale_import.py uses
        if not source.exists():
            WRITERS[args.format](source, args.images, workers=1)
        paths = [str(r.path) for r in read_dataset(source, args.format).records if r.path]
        settings = DecodeSettings(
            salt="bench", window=None, stack=False, resolutions=(args.resolution,),
            rule="pad", channels=1,
        )  # fmt: skip
        out = Path(tmp) / "out"

        def ours() -> None:
            for i, path in enumerate(paths):
                decode_file(settings, path, str(i))

        def prepare() -> None:
            shutil.rmtree(out, ignore_errors=True)
            prepare_dataset(
                source, args.format, out, resolutions=(args.resolution,), salt="b", workers=1
            )

        steps: dict[str, Callable[[], object]] = {
            "raw": lambda: raw_chunk(paths, args.resolution),
            "decode_file": ours,
            "prepare_dataset": prepare,
        }
        ours()  # warm-up: page cache, codec imports
        micros: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                start = cpu_seconds()
                step()
                micros[name].append((cpu_seconds() - start) / len(paths) * 1e6)
    med = {name: statistics.median(values) for name, values in micros.items()}
    print(f"{args.format}: {len(paths)} images at {args.resolution} px, CPU us per image "
          f"(median of {args.repeats})")  # fmt: skip
    for name, values in micros.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:16s} {med[name]:7.0f}   runs: {runs}")
    print(f"  per core ours/raw: decode_file {med['raw'] / med['decode_file']:.2f}, "
          f"prepare_dataset {med['raw'] / med['prepare_dataset']:.2f}; rest of the pipeline "
          f"{med['prepare_dataset'] - med['decode_file']:.0f} us per image")  # fmt: skip


if __name__ == "__main__":
    main()
