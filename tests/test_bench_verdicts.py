"""benchmarks/verdicts.py: the records the benchmarks leave, and the table `make bench` ends with."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import verdicts  # noqa: E402


def test_records_only_where_asked_and_the_table_names_what_was_missed(tmp_path, monkeypatch):
    results = tmp_path / "run.jsonl"
    monkeypatch.delenv("METAVIZ_BENCH_RESULTS", raising=False)
    verdicts.record("not kept", "1 s", True, "nowhere")
    assert not results.exists()

    monkeypatch.setenv("METAVIZ_BENCH_RESULTS", str(results))
    verdicts.record("adaptation >= 2x learn2learn", "2.10x", True, "benchmarks/adaptation.py")
    verdicts.record("500 tasks to a map <= 10 s", "12.4 s", False, "benchmarks/embed.py")
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verdicts.py"), str(results)],
                           capture_output=True, text=True, check=True).stdout
    lines = table.splitlines()
    assert any("adaptation >= 2x learn2learn" in line and " met " in line and "2.10x" in line for line in lines)
    assert any("500 tasks to a map <= 10 s" in line and "MISSED" in line and "12.4 s" in line for line in lines)
    assert "1 of 2 met" in table


def test_a_missing_results_file_is_a_clear_message(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verdicts.py"), str(tmp_path / "none.jsonl")],
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "no results" in run.stderr
