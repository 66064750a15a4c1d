"""How long loading a split takes: cold (no disk cache), and warm (disk cache present).

Warm is measured twice: in this process with the in-memory cache cleared, and in a fresh
Python process (what a restarted dashboard pays, not counting imports). Each row gets its
own empty cache directory, so "cold" really decodes every PNG.

    METAVIZ_DATA_DIR=/path/to/omniglot python benchmarks/data_load.py [--repeats 3]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # runs from a checkout, installed or not

from metaviz import data  # noqa: E402

ROWS = [("omniglot", "train"), ("omniglot", "val"), ("omniglot", "test"), ("digits", "train")]

FRESH_PROCESS = """
import sys, time
from metaviz.data import load_classes
start = time.perf_counter()
load_classes(sys.argv[1], sys.argv[2])
print(time.perf_counter() - start)
"""


def timed_load(dataset: str, split: str) -> tuple[float, data.ImageClasses]:
    data._load_classes_cached.cache_clear()
    data._digits_images.cache_clear()  # digits keep their resized images in memory too
    start = time.perf_counter()
    classes = data.load_classes(dataset, split)
    return time.perf_counter() - start, classes


def fresh_process_load(dataset: str, split: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, dataset, split],
        check=True, capture_output=True, text=True, cwd=REPOSITORY,
    )
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm loads per row; the best is shown")
    arguments = parser.parse_args()

    print(f"data directory: {data.data_dir()}")
    print(f"{'dataset':<9} {'split':<6} {'classes':>7} {'cold s':>8} {'warm s':>8} {'warm, new process s':>20}")
    for dataset, split in ROWS:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["METAVIZ_CACHE_DIR"] = cache
            cold, classes = timed_load(dataset, split)
            warm = min(timed_load(dataset, split)[0] for _ in range(arguments.repeats))
            fresh = min(fresh_process_load(dataset, split) for _ in range(arguments.repeats))
        print(f"{dataset:<9} {split:<6} {classes.num_classes:>7} {cold:>8.2f} {warm:>8.2f} {fresh:>20.2f}")
    os.environ.pop("METAVIZ_CACHE_DIR")


if __name__ == "__main__":
    main()
