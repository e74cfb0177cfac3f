"""DCGAN training throughput: our loop against the PyTorch examples' reference loop, same run.

The reference is pytorch/examples' `dcgan/main.py`, read from a checkout OUTSIDE this repo
(its code is never copied here). Its module imports torchvision and a dataset, so the bench
takes from its syntax tree only what a training step is: the `Generator` and `Discriminator`
classes, `weights_init`, and the statements of its inner training loop up to
`optimizerG.step()`; it runs them on one preloaded batch (no data loading at all, which
favours the reference). Same architecture (64x64, nz 100, ngf = ndf = 64, one channel), same
batch size, same Adam settings.

Ours is `ml.training.gan`'s real step (`_train_step`) for `dcgan` at the same size with its
defaults (channels-last memory format, no weight gradients for D in the generator step): it
samples its batches from a prepared dataset memmap, x-flips them, and updates an EMA
generator, i.e. does more work per step than the reference. It is measured in float32 (same
arithmetic as the reference) and with bfloat16 autocast (`GanConfig.amp`), which pays off on
CPUs with AVX512-BF16 / AMX and on GPUs. Timings alternate between the variants, each
`--repeats` times; medians are reported.

`--clock wall` (default) times wall-clock seconds with `--threads` intra-op threads. On a CPU
shared with other busy processes a multi-threaded step mostly measures the scheduler (each
parallel region waits for its slowest thread), so `--clock cpu` times the CPU seconds of the
one thread that runs the step (`time.thread_time`, with `--threads 1` forced): the work each
loop does, unaffected by time spent descheduled.

    git clone https://github.com/pytorch/examples /tmp/pytorch-examples   # outside the repo
    .venv/bin/python bench/gan_throughput.py --reference /tmp/pytorch-examples/dcgan/main.py
    .venv/bin/python bench/gan_throughput.py --reference ... --clock cpu --repeats 15 --steps 1
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn, optim

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.data.store import DatasetWriter  # noqa: E402
from ml.data.training_images import TrainingImages  # noqa: E402
from ml.training.gan import GanConfig, _augmenter, _Run, _train_step  # noqa: E402

RESOLUTION = 64


class Reference:
    """The reference's networks and loop body, compiled from its source file."""

    def __init__(self, path: Path, batch: int, nz: int = 100, width: int = 64) -> None:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        defs = [
            node
            for node in tree.body
            if isinstance(node, ast.ClassDef | ast.FunctionDef)
            and node.name in {"Generator", "Discriminator", "weights_init"}
        ]
        if len(defs) != 3:
            raise SystemExit(f"{path}: Generator, Discriminator or weights_init not found")
        loop = self._inner_loop(tree)
        self.ns: dict = {
            "torch": torch,
            "nn": nn,
            "optim": optim,
            "nz": nz,
            "ngf": width,
            "ndf": width,
            "nc": 1,
            "ngpu": 1,
            "device": torch.device("cpu"),
            "real_label": 1,
            "fake_label": 0,
        }
        exec(compile(ast.Module(defs, []), str(path), "exec"), self.ns)
        ns = self.ns
        ns["netG"] = ns["Generator"](1)
        ns["netG"].apply(ns["weights_init"])
        ns["netD"] = ns["Discriminator"](1)
        ns["netD"].apply(ns["weights_init"])
        ns["criterion"] = nn.BCELoss()
        ns["optimizerD"] = optim.Adam(ns["netD"].parameters(), lr=2e-4, betas=(0.5, 0.999))
        ns["optimizerG"] = optim.Adam(ns["netG"].parameters(), lr=2e-4, betas=(0.5, 0.999))
        ns["data"] = (torch.rand(batch, 1, RESOLUTION, RESOLUTION) * 2 - 1,)
        self.step_code = compile(ast.Module(loop, []), str(path), "exec")

    @staticmethod
    def _inner_loop(tree: ast.Module) -> list[ast.stmt]:
        for node in ast.walk(tree):
            if isinstance(node, ast.For) and ast.unparse(node.target) == "(i, data)":
                body = []
                for stmt in node.body:
                    body.append(stmt)
                    if ast.unparse(stmt) == "optimizerG.step()":
                        return body
        raise SystemExit("reference: inner training loop ending in optimizerG.step() not found")

    def step(self) -> None:
        exec(self.step_code, self.ns)


def _dataset(root: Path, n: int = 512) -> Path:
    writer = DatasetWriter(root, (RESOLUTION,), n, label_names=("a",))
    rng = np.random.default_rng(0)
    for i in range(n):
        writer.add(f"k{i}", f"p{i}", {"a": 1}, f"{i:064x}", rng.uniform(0, 1, (64, 64)))
    writer.finish({f"k{i}": "train" for i in range(n)}, fsync=False)
    return root


def ours(data: TrainingImages, batch: int, **overrides: object):  # type: ignore[no-untyped-def]
    config = GanConfig(
        arch="dcgan",
        resolution=RESOLUTION,
        batch_size=batch,
        arch_options={"z_dim": 100, "base_channels": 64},
        **overrides,  # type: ignore[arg-type]
    )
    run = _Run(data, config, torch.device("cpu"))
    augment = _augmenter(run)

    def step() -> None:
        _train_step(run, data, augment)
        run.nimg += batch

    return step


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def timed(step, n: int, clock=time.perf_counter) -> float:  # type: ignore[no-untyped-def]
    start = clock()
    for _ in range(n):
        step()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="pytorch/examples dcgan/main.py; without it (CI) our float32 step is the baseline",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed seconds; cpu: the stepping thread's CPU seconds (forces --threads 1)",
    )
    args = parser.parse_args()
    if args.clock == "cpu":
        args.threads = 1  # other intra-op threads' CPU time would not be counted
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-gan-") as tmp:
        data = TrainingImages(_dataset(Path(tmp) / "data"), RESOLUTION)
        variants = {}
        if args.reference is not None:
            reference = Reference(args.reference, args.batch).step
            variants["reference (pytorch/examples dcgan)"] = reference
        variants["ours, float32"] = ours(data, args.batch)
        variants["ours, bfloat16 autocast (--amp)"] = ours(data, args.batch, amp=True)
        for step in variants.values():
            timed(step, 2)  # warm-up: allocator, oneDNN primitive caches
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, step in variants.items():
                times[name].append(timed(step, args.steps, clock))
    print(
        f"CPU threads {args.threads}, batch {args.batch}, {RESOLUTION}x{RESOLUTION}, "
        f"{args.steps} steps x {args.repeats} repeats, {args.clock} clock, "
        f"torch {torch.__version__}"
    )
    rates = {}
    for name, runs in times.items():
        rates[name] = args.batch * args.steps / statistics.median(runs)
        shown = ", ".join(f"{t:.2f}" for t in runs)
        unit = "images/s" if args.clock == "wall" else "images/CPU-s"
        print(f"{name:<38} {rates[name]:8.1f} {unit}  (runs {shown} s)")
    base_name, base = next(iter(rates.items()))
    for name, rate in list(rates.items())[1:]:
        print(f"ratio {name} / {base_name} = {rate / base:.2f}x")
    if args.reference is None:
        print("no --reference: the ratio against pytorch/examples' loop was not measured")


if __name__ == "__main__":
    main()
