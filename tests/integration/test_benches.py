"""Every bench in bench/ runs at a tiny size in CI, so none can rot unnoticed.

These check that each script runs to the end and prints its ratio against the baseline it
measures in the same run; the figures themselves are claims for the README, not test targets.
(bench/reading_load.py and bench/login_burst.py run in test_load_faults.py and test_bursts.py.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT

TINY: dict[str, tuple[list[str], str]] = {
    "startup": (["--repeat", "1", "--restarts", "1"], "heavy modules loaded by create_app(): none"),
    "blinded_serving": (["--rounds", "1", "--size", "64"], "ratio"),
    "dataset_import": (["--files", "12", "--resolution", "32", "--repeats", "1"], "ratio"),
    "feature_extraction": (["--images", "8", "--batch", "4", "--repeats", "1"], "ratio"),
    # Without --reference (pytorch/examples' loop is kept outside the repo) float32 is the base.
    "gan_throughput": (["--batch", "8", "--steps", "2", "--repeats", "1"], "ratio"),
    "knn": (
        [
            "--queries",
            "50",
            "--reference",
            "500",
            "--dim",
            "16",
            "--repeats",
            "1",
            "--naive-queries",
            "20",
        ],
        "identical index sets in 100.0000% of rows",
    ),
    # Enough jobs that every job type has one to render.
    "page_render": (["--jobs", "200", "--repeat", "2"], "target 200 ms server time"),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_bench_runs_at_a_tiny_size(name: str) -> None:
    args, expected = TINY[name]
    done = subprocess.run(
        [sys.executable, f"bench/{name}.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert expected in done.stdout, output[-3000:]
