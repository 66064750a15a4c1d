"""Many users at once: interaction times of `streamlit run` with 1, 4 and 8 simulated users.

Each user is a websocket client speaking Streamlit's protocol (tests/load_client.py), with a
task of its own: it opens the Adaptation page through a link with its task seed (the server
samples the task and adapts the shipped digits checkpoint), then changes the number of
adaptation steps CHANGES times (each is a new adaptation). All users start together. An
"interaction" is one request, from sending it to the end of the script run it caused, as a
browser would see it. Every result is checked against the library's own numbers
(tests.load_client.problems), so a fast wrong answer cannot pass.

Each level gets a fresh server, warmed by one visit (importing torch and loading the
checkpoint, reported as "cold start"), then measured; the server's peak resident memory
(VmHWM) is read at the end of the level.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/load.py [--users 1 4 8] [--changes 4]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.load_client, run from anywhere

from tests.load_client import (  # noqa: E402
    SHIPPED_DIGITS, Server, checkpoint_folder, percentile, problems, run_users, user_visit,
)


def level(folder: Path, users: int, changes: tuple[int, ...]) -> dict:
    with Server(folder) as server:
        started = time.perf_counter()
        warm = user_visit(server.url, 10_000, ())
        cold = time.perf_counter() - started
        started = time.perf_counter()
        visits = run_users(server.url, users, changes)
        wall = time.perf_counter() - started
        peak = server.peak_rss_mb()
    found = [problem for visit in [warm, *visits] for problem in problems(visit, folder / SHIPPED_DIGITS.name,
                                                                         changes if visit is not warm else ())]
    opening = [visit.timings[0] for visit in visits if visit.timings]
    changing = [timing for visit in visits for timing in visit.timings[1:]]
    everything = opening + changing
    return {"users": users, "interactions": len(everything), "p50": percentile(everything, 0.5),
            "p95": percentile(everything, 0.95), "open_p50": percentile(opening, 0.5),
            "change_p50": percentile(changing, 0.5), "change_p95": percentile(changing, 0.95), "wall": wall,
            "cold": cold, "peak_rss_mb": peak, "problems": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--changes", type=int, default=4, help="step changes per user after opening the page")
    arguments = parser.parse_args()
    changes = tuple(range(1, arguments.changes + 1))  # 1, 2, ... steps: each a new adaptation
    folder = checkpoint_folder(Path(tempfile.mkdtemp(prefix="metaviz-load-")) / "checkpoints")
    print("| users | interactions | p50 | p95 | open page p50 | change steps p50 / p95 | wall | cold start "
          "| server peak RSS | results |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for users in arguments.users:
        row = level(folder, users, changes)
        verdict = "all correct, own task" if not row["problems"] else f"{len(row['problems'])} PROBLEMS"
        print(f"| {users} | {row['interactions']} | {row['p50']:.2f} s | {row['p95']:.2f} s | {row['open_p50']:.2f} s "
              f"| {row['change_p50']:.2f} s / {row['change_p95']:.2f} s | {row['wall']:.1f} s | {row['cold']:.1f} s "
              f"| {row['peak_rss_mb']:.0f} MB | {verdict} |", flush=True)
        for problem in row["problems"]:
            print("   ", problem, file=sys.stderr)


if __name__ == "__main__":
    main()
