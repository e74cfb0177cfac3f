"""CheXpert- / RSNA-sized imports: `prepare_dataset` end to end against a raw decode loop.

The datasets are bench/scale_fixture.py trees (real X-rays and a real CT slice, varied per
image). For each format, timed in the same run over the same files:

* raw, 1 process: the loop a researcher would write, with no store, hashing, splits, checks or
  journal: Pillow (JPEG) or `pydicom.dcmread(path).pixel_array` (DICOM) to float32 [0, 1]
  (min..max for DICOM), Pillow LANCZOS resize of the long side to the resolution;
* raw, N processes: that loop over chunks of files in a `ProcessPoolExecutor` of N processes,
  pool start-up included;
* ours, 1 and N processes: `prepare_dataset(..., workers=k)` in a fresh process, end to end:
  listing the CSV and files, decoding, resizing, hashing, writing the store and journal,
  patient splits and the manifest.

Each import runs in its own process, whose peak RSS (summed over it and its decoding
processes, sampled every 200 ms) is reported with the disk used by the source tree and by the
store. Figures are medians of `--repeats` runs; the raw and ours runs alternate.

    .venv/bin/python bench/scale_import.py                       # 2,000 images per format
    .venv/bin/python bench/scale_import.py --images 100000 --fixture /data/scale
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_fixture import write_chexpert_tree, write_rsna_tree  # noqa: E402

from ml.data.formats import read_dataset  # noqa: E402
from ml.data.pools import usable_cores  # noqa: E402

WRITERS = {"chexpert": write_chexpert_tree, "rsna": write_rsna_tree}
LUMA = np.asarray((0.299, 0.587, 0.114), dtype=np.float32)


# ---------------------------------------------------------------- raw baseline


def raw_one(path: str, res: int) -> None:
    if path.endswith(".dcm"):
        arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
        if arr.ndim == 3:
            arr = arr @ LUMA
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    else:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    h, w = arr.shape
    scale = res / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    Image.fromarray(arr).resize(size, resample=Image.Resampling.LANCZOS)


def raw_chunk(paths: list[str], res: int) -> int:
    for path in paths:
        raw_one(path, res)
    return len(paths)


def raw(paths: list[str], res: int, workers: int, cpu: list[float] | None = None) -> float:
    """Wall seconds of the raw loop; with one process its CPU seconds go to `cpu`."""
    start, start_cpu = time.perf_counter(), time.process_time()
    if workers <= 1:
        raw_chunk(paths, res)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    else:
        chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = sum(pool.map(raw_chunk, chunks, [res] * len(chunks)))
        assert done == len(paths)
    return time.perf_counter() - start


# ---------------------------------------------------------------- ours, in a fresh process


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and every process below it (the fork server and decoders included),
    walked through /proc/<pid>/task/<tid>/children: cheap enough to sample while timing."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # ended meanwhile
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def child(args: argparse.Namespace) -> None:
    """One import, timed here; prints a JSON line (seconds, images, peak RSS)."""
    from ml.data.prepare import prepare_dataset

    peak = {"tree": 0}
    running = True

    def sample() -> None:
        while running:
            peak["tree"] = max(peak["tree"], _tree_rss_kib(os.getpid()))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    start = time.perf_counter()
    result = prepare_dataset(
        Path(args.source),
        args.format,
        Path(args.out),
        resolutions=(args.resolution,),
        salt="bench-salt",
        workers=args.workers,
    )
    seconds = time.perf_counter() - start
    running = False
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    self_kib = usage.ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                # This process only: all of a 1-process import, the parent's share otherwise.
                "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
                "images": result.info.n_images,
                "failed": result.n_failed,
                "peak_rss_mib": max(peak["tree"], self_kib) / 1024,
                "self_rss_mib": self_kib / 1024,
            }
        )
    )


def ours(fmt: str, source: Path, out: Path, res: int, workers: int) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(
        [
            *(sys.executable, __file__, "--child", "--format", fmt, "--source", str(source)),
            *("--out", str(out), "--resolution", str(res), "--workers", str(workers)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"import failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def disk_mib(root: Path) -> float:
    """Blocks really used (sparse files count what they hold), in MiB."""
    return sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file()) / 2**20


# ---------------------------------------------------------------- main


def bench_format(fmt: str, source: Path, work: Path, args: argparse.Namespace, n: int) -> None:
    started = time.perf_counter()
    report = read_dataset(source, fmt)
    listing = time.perf_counter() - started
    paths = [str(r.path) for r in report.records if r.path is not None]
    if len(paths) != args.images or report.errors:
        raise SystemExit(f"{fmt}: listed {len(paths)} files, errors {report.errors[:3]}")
    raw(paths[: min(len(paths), 64)], args.resolution, 1)  # warm-up: page cache, codec imports
    runs: dict[str, list[float]] = {k: [] for k in ("raw1", "rawN", "ours1", "oursN")}
    cpu: dict[str, list[float]] = {"raw1": [], "ours1": []}
    rss: dict[str, float] = {"ours1": 0.0, "oursN": 0.0}
    store_mib = 0.0
    for _ in range(args.repeats):
        runs["raw1"].append(raw(paths, args.resolution, 1, cpu["raw1"]))
        one = ours(fmt, source, work / f"{fmt}-1", args.resolution, 1)
        runs["ours1"].append(one["seconds"])
        cpu["ours1"].append(one["cpu_seconds"])
        rss["ours1"] = max(rss["ours1"], one["peak_rss_mib"])
        runs["rawN"].append(raw(paths, args.resolution, n))
        many = ours(fmt, source, work / f"{fmt}-{n}", args.resolution, n)
        runs["oursN"].append(many["seconds"])
        rss["oursN"] = max(rss["oursN"], many["peak_rss_mib"])
        for result in (one, many):
            if result["images"] != len(paths) or result["failed"]:
                raise SystemExit(f"{fmt}: import lost images: {result}")
        store_mib = disk_mib(work / f"{fmt}-{n}")
    med = {k: statistics.median(v) for k, v in runs.items()}
    rate = {k: len(paths) / v for k, v in med.items()}
    print(f"{fmt}: {len(paths)} images, source {disk_mib(source):.1f} MiB on disk, "
          f"listing {listing:.2f} s ({len(paths) / listing:.0f} files/s)")  # fmt: skip
    print(f"  raw decode, 1 process      : {rate['raw1']:9.1f} images/s")
    print(f"  raw decode, {n:2d} processes   : {rate['rawN']:9.1f} images/s")
    print(f"  prepare_dataset, 1 process : {rate['ours1']:9.1f} images/s  peak RSS "
          f"{rss['ours1']:.0f} MiB")  # fmt: skip
    print(f"  prepare_dataset, {n:2d} procs  : {rate['oursN']:9.1f} images/s  peak RSS "
          f"{rss['oursN']:.0f} MiB (all processes)  store {store_mib:.1f} MiB")  # fmt: skip
    print(f"  ratio ours/raw throughput, 1 process: {rate['ours1'] / rate['raw1']:.2f}; "
          f"{n} processes: {rate['oursN'] / rate['rawN']:.2f}")  # fmt: skip
    per_cpu = {k: len(paths) / statistics.median(v) for k, v in cpu.items()}
    print(f"  per core, CPU time (robust to other load on the machine): raw "
          f"{per_cpu['raw1']:.1f}, ours {per_cpu['ours1']:.1f} images/CPU-s; "
          f"ratio ours/raw per core = {per_cpu['ours1'] / per_cpu['raw1']:.2f}")  # fmt: skip
    print(f"  scaling 1 -> {n} processes: ours {rate['oursN'] / rate['ours1']:.2f}x, "
          f"raw {rate['rawN'] / rate['raw1']:.2f}x")  # fmt: skip
    for key, values in runs.items():
        print(f"    {key} runs (s): {', '.join(f'{v:.3f}' for v in values)}")
    for key, values in cpu.items():
        print(f"    {key} CPU (s): {', '.join(f'{v:.3f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="per format")
    parser.add_argument("--formats", nargs="+", default=["chexpert", "rsna"])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="N; default every usable core")
    parser.add_argument("--fixture", type=Path, help="keep the trees here and reuse them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--format", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    n = args.workers or usable_cores()
    print(f"usable cores: {usable_cores()}, N = {n} processes, resolution {args.resolution}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        fixture = args.fixture or Path(tmp) / "fixture"
        for fmt in args.formats:
            source = fixture / f"{fmt}-{args.images}"
            if not source.exists():
                started = time.perf_counter()
                WRITERS[fmt](source, args.images, workers=n)
                print(f"{fmt}: wrote {args.images} images in {time.perf_counter() - started:.1f} s")
            bench_format(fmt, source, Path(tmp) / "out", args, n)


if __name__ == "__main__":
    main()
