"""Issue 10's targets in one table at the end of `make bench`.

Each benchmark with a target calls `record` with what it measured; with METAVIZ_BENCH_RESULTS
naming a file (the Makefile's bench target sets it), the record is appended there as one JSON
line, else nothing is kept. Run as a script, this prints the file's records as a table:

    .venv/bin/python benchmarks/verdicts.py benchmarks/last-run.jsonl
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def record(target: str, measured: str, met: bool, command: str) -> None:
    """One target's figure from this run: `measured` in words, with its unit."""
    results = os.environ.get("METAVIZ_BENCH_RESULTS")
    if not results:
        return
    line = json.dumps({"target": target, "measured": measured, "met": bool(met), "command": command})
    with open(results, "a", encoding="utf-8") as file:
        file.write(line + "\n")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RESULTS.jsonl")
    path = Path(sys.argv[1])
    if not path.is_file():
        sys.exit(f"{path}: no results (run the benchmarks with METAVIZ_BENCH_RESULTS={path})")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        sys.exit(f"{path}: no results recorded (did every benchmark fail?)")
    width = max(len(row["target"]) for row in rows)
    print(f"\nIssue 10's targets, this run (load average {os.getloadavg()[0]:.1f} now)")
    print(f"{'target':<{width}}  {'status':<6}  measured  [command]")
    for row in rows:
        print(f"{row['target']:<{width}}  {'met' if row['met'] else 'MISSED':<6}  {row['measured']}  "
              f"[{row['command']}]")
    missed = sum(not row["met"] for row in rows)
    print(f"{len(rows) - missed} of {len(rows)} met" + (
        "; benchmarks/README.md says what was tried for each one missed" if missed else ""))


if __name__ == "__main__":
    main()
