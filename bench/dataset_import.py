"""Import throughput of `ml.data.prepare.prepare_dataset` against a raw pydicom + Pillow loop.

The dataset is a folder-per-class tree of ~300 DICOM files copied (new Patient / Study / SOP
UIDs, via pydicom) from pydicom's bundled test files that both decoders can read: plain, RLE,
JPEG-LS, JPEG 2000 and RGB. The baseline, timed in the same run over the same files, is
`pydicom.dcmread(path).pixel_array`, min..max rescale to [0, 1] float, luminance for RGB and a
Pillow LANCZOS resize of the long side to the same resolution: no store, no hashing, no
splits, no checks. Each measurement runs 3 times, alternating, and medians are reported.

    .venv/bin/python bench/dataset_import.py
    .venv/bin/python bench/dataset_import.py --files 600 --resolution 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.data.errors import ImageDecodeError  # noqa: E402
from ml.data.images import load_image  # noqa: E402
from ml.data.prepare import prepare_dataset  # noqa: E402

CANDIDATES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_jpeg_dcmd.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_small_odd.dcm",
)
LUMA = np.asarray((0.299, 0.587, 0.114), dtype=np.float32)


def usable_sources() -> list[Path]:
    """Candidates present locally (no download) that pydicom and our decoder both decode."""
    found = []
    for name in CANDIDATES:
        path = pydicom.data.get_testdata_file(name, download=False)
        if path is None:
            continue
        try:
            pydicom.dcmread(path).pixel_array  # noqa: B018 - decoding is the check
            load_image(Path(path))
        except (ImageDecodeError, RuntimeError, ValueError, NotImplementedError) as exc:
            print(f"  skip {name}: {type(exc).__name__}: {exc}")
            continue
        found.append(Path(path))
    return found


def build(root: Path, sources: list[Path], n_files: int) -> list[Path]:
    files = []
    for i in range(n_files):
        ds = pydicom.dcmread(sources[i % len(sources)])
        ds.PatientID = f"BENCH{i // 2:05d}"
        ds.StudyInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        dest = root / ("a" if i % 2 else "b") / f"img{i:05d}.dcm"
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dest)
        files.append(dest)
    return files


def raw(files: list[Path], res: int) -> float:
    start = time.perf_counter()
    for path in files:
        arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
        if arr.ndim == 3:
            arr = arr @ LUMA
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        h, w = arr.shape
        scale = res / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        Image.fromarray(arr).resize(size, resample=Image.Resampling.LANCZOS)
    return time.perf_counter() - start


def ours(source: Path, work: Path, run: int, res: int, n_files: int) -> float:
    start = time.perf_counter()
    result = prepare_dataset(
        source, "folder", work / f"out{run}", resolutions=(res,), salt="bench-salt"
    )
    elapsed = time.perf_counter() - start
    if result.info.n_images != n_files or result.n_failed:
        raise SystemExit(f"import lost images: {result.info} {result.errors[:3]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sources = usable_sources()
    print(f"sources ({len(sources)}): {', '.join(p.name for p in sources)}")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        work = Path(tmp)
        files = build(work / "data", sources, args.files)
        mib = sum(f.stat().st_size for f in files) / 2**20
        print(f"dataset: {len(files)} DICOM files, {mib:.1f} MiB, resolution {args.resolution}")
        raw(files, args.resolution)  # warm-up: page cache, codec imports
        t_raw, t_ours = [], []
        for run in range(args.repeats):
            t_raw.append(raw(files, args.resolution))
            t_ours.append(ours(work / "data", work, run, args.resolution, len(files)))
    raw_s, ours_s = statistics.median(t_raw), statistics.median(t_ours)
    n = len(files)
    print(
        f"raw pydicom + Pillow : {n / raw_s:8.1f} images/s  (median of {args.repeats}: "
        f"{raw_s:.3f} s; runs {', '.join(f'{t:.3f}' for t in t_raw)})"
    )
    print(
        f"prepare_dataset      : {n / ours_s:8.1f} images/s  (median of {args.repeats}: "
        f"{ours_s:.3f} s; runs {', '.join(f'{t:.3f}' for t in t_ours)})"
    )
    print(f"ratio ours/raw throughput = {raw_s / ours_s:.2f}")
    print(f"overhead = (ours_time / raw_time - 1) * 100 % = {(ours_s / raw_s - 1) * 100:.1f} %")


if __name__ == "__main__":
    main()
