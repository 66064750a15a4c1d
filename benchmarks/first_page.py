"""First rendered page after `make run`: a fresh `streamlit run app.py`, then Chromium opens it.

Three figures per run, each from a new server process on the shipped checkpoints:
"server up" (process start to Streamlit's health check answering), "first page" (page.goto
to the Checkpoint page's card drawn, in headless Chromium) and their sum "total", what a user
waits after typing `make run` once the virtual environment exists (issue 10 asks for under 5 s).
The card comes from the checkpoint's file header; torch is imported only after it, when the
page opens the weights (which the next page needs anyway). Also lists which heavy modules
app.py's own imports pull in (they must stay off the start-up path: captum, umap, numba, torch).

    .venv/bin/python benchmarks/first_page.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks"]

from benchmarks.verdicts import record  # noqa: E402
from tests.test_browser import CHROMIUM_ARGS, free_port, wait_until_healthy  # noqa: E402

TARGET_SECONDS = 5.0
CARD_TEXT = "Task shape"  # the Checkpoint page's card, drawn once the checkpoint header is read
HEAVY_MODULES = ("captum", "umap", "numba", "torch")


def one_start(browser) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_healthy(url, server)
        up = time.perf_counter()
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_text(CARD_TEXT).first.wait_for()
        drawn = time.perf_counter()
        context.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {"server up": up - start, "first page": drawn - up, "total": drawn - start}


def imports_of_first_page() -> list[str]:
    """Heavy modules a fresh interpreter holds after importing what app.py imports."""
    code = ("import sys; sys.path.insert(0, '.'); import metaviz.services, metaviz.safety, "
            "pages._checkpoint_upload, pages._report, pages._shared; "
            f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return output.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=CHROMIUM_ARGS)
        runs = [one_start(browser) for _ in range(args.repeats)]
        browser.close()
    print(f"first page after a fresh `streamlit run app.py`, median of {args.repeats}; target < {TARGET_SECONDS} s")
    print(f"{'phase':<14}{'median s':>10}{'worst s':>10}")
    for phase in runs[0]:
        values = [run[phase] for run in runs]
        print(f"{phase:<14}{statistics.median(values):>10.2f}{max(values):>10.2f}")
    total = statistics.median(run["total"] for run in runs)
    print(f"target: {'met' if total < TARGET_SECONDS else 'MISSED'}")
    record(f"first page after `make run` < {TARGET_SECONDS:g} s (Chromium)",
           f"median {total:.2f} s of {args.repeats}", total < TARGET_SECONDS, "benchmarks/first_page.py")
    heavy = imports_of_first_page()
    print(f"heavy modules imported by app.py's own imports: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
