"""Freed memory kept (metaviz.allocator) against glibc's defaults, on the commands that gain.

Each row runs one command twice per round in fresh processes, once as shipped and once with
METAVIZ_KEEP_FREED_MEMORY=0, alternating, and reports the CPU seconds (user + system, the
children's) of the best round of each. Interleaving keeps a busy machine's load on both sides;
the ratio is the figure to read.

- train: `metaviz train`, MAML on Omniglot 5-way 1-shot as omniglot-5w1s-maml's last phase
  (meta-batch 32, 5 query images per class, 3 inner steps), a few iterations from the archived
  36,000-iteration file (startup included);
- evaluate: `metaviz evaluate` of the shipped omniglot-5w1s-maml on 100 meta-test tasks;
- task map: 300 Omniglot tasks to a finished UMAP map as the Task embeddings page makes it
  (benchmarks/embed.py's cold child).

    METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/allocator.py
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
START = REPOSITORY / "checkpoints" / "archive" / "omniglot-5w1s-maml-36000.safetensors"
SHIPPED = REPOSITORY / "checkpoints" / "omniglot-5w1s-maml.safetensors"


def commands(iterations: int, scratch: Path) -> dict[str, list[str]]:
    python = [sys.executable]
    return {
        f"train, {iterations} iterations": python + [
            "-m", "metaviz", "train", "--algorithm", "maml", "--dataset", "omniglot", "--ways", "5", "--shots", "1",
            "--queries", "5", "--meta-batch", "32", "--train-steps", "3", "--test-steps", "3",
            "--iterations", str(iterations), "--init-from", str(START), "--val-every", "100000",
            "--save-every", "100000", "--run-dir", str(scratch / "run"), "--out", str(scratch / "out.safetensors"),
            "--name", "benchmark"],
        "evaluate, 100 tasks": python + ["-m", "metaviz", "evaluate", str(SHIPPED), "--tasks", "100", "--json"],
        "task map, 300 tasks": python + [str(REPOSITORY / "benchmarks" / "embed.py"), "--child", "--tasks", "300"],
    }


def cpu_seconds(command: list[str], keep: bool, scratch: Path) -> tuple[float, float]:
    """(user, system) CPU seconds of one run of `command` in a fresh process."""
    shutil.rmtree(scratch / "run", ignore_errors=True)  # train must start afresh, not resume
    (scratch / "out.safetensors").unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY), "PYTHONWARNINGS": "ignore",
           "METAVIZ_KEEP_FREED_MEMORY": "1" if keep else "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=REPOSITORY, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    for path in (START, SHIPPED):
        if not path.is_file():
            sys.exit(f"{path} is missing")
    print(f"CPU seconds (user + system), best of {args.rounds} interleaved rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    header = f"{'command':<24} {'glibc defaults':>16} {'freed memory kept':>18} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for label, command in commands(args.iterations, scratch).items():
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(args.rounds):
                for keep in (False, True):
                    runs[keep].append(cpu_seconds(command, keep, scratch))
            best = {keep: min(values, key=sum) for keep, values in runs.items()}
            cells = [f"{sum(best[keep]):6.1f} ({best[keep][1]:4.1f} sys)" for keep in (False, True)]
            print(f"{label:<24} {cells[0]:>16} {cells[1]:>18} {sum(best[False]) / sum(best[True]):>5.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
