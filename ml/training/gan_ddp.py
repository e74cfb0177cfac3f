"""Data-parallel GAN training under torchrun: one process per GPU (or CPU slot).

    torchrun --nproc_per_node 2 -m ml.training.gan_ddp \\
        --dataset datasets/7 --out runs/dcgan-64 --config-json '{"arch": "dcgan", ...}'

Every process runs `ml.training.gan.train_gan` with the same arguments; it joins the process
group torchrun describes (NCCL on CUDA, gloo on CPU), splits each global batch of
`batch_size` over the processes, and lets rank 0 alone write logs, grids and checkpoints.
The run folder is the same as a single-process run's: it resumes (with any number of
processes) and samples like one; every process must see it (one machine, or a shared
filesystem). `"device": "auto"` picks CUDA when there is one. Rank 0
prints the result as one JSON line on stdout, and writes it to `--result` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import torch

from ml.training.gan import GanConfig, train_gan


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.training.gan_ddp", description=__doc__)
    parser.add_argument("--dataset", required=True, type=Path, help="prepared dataset folder")
    parser.add_argument("--out", required=True, type=Path, help="run folder (resumed if present)")
    parser.add_argument("--config-json", default="{}", help="GanConfig fields as a JSON object")
    parser.add_argument("--result", type=Path, help="also write the result JSON here (rank 0)")
    return parser


def _progress(done: int, total: int, message: str) -> None:
    print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    values = json.loads(args.config_json)
    if not isinstance(values, dict):
        raise SystemExit("--config-json must be a JSON object")
    config = GanConfig(**values)
    if config.device == "auto":
        config.device = "cuda" if torch.cuda.is_available() else "cpu"
    result = train_gan(args.dataset, args.out, config, progress=_progress)  # rank 0 reports
    if int(os.environ.get("RANK", "0")) == 0:
        text = json.dumps(asdict(result))
        print(text, flush=True)
        if args.result is not None:
            args.result.write_text(text + "\n", encoding="utf-8")
    return 0


def leave(code: int) -> NoReturn:
    """Exit without interpreter shutdown. A gloo rank on a loaded CPU machine has died in
    std::terminate at exit after its run was done and written; when `main` returns, every
    file is written and closed and the process group destroyed, so finalizers and C++ static
    destructors have nothing left to do, and skipping them removes that window."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
