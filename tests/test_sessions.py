"""One session, one long computation at a time; sessions never share or change each other's
state; the same checkpoint, task seed and settings give identical results in any process."""
import hashlib
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from metaviz.one_run import OneRunAtATime
from tests.test_app import all_text, checkpoint_dir, start, visit, write_checkpoint  # noqa: F401 (a fixture)

REPOSITORY = Path(__file__).resolve().parents[1]
WAIT = 30  # seconds a thread may wait for another before the test gives up (a hang, not a timing)


def run_together(*jobs) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads), "a computation never finished"


# --- a double click ----------------------------------------------------------------------------


def test_a_double_click_never_runs_two_computations_of_one_session():
    guard, lock = OneRunAtATime(), threading.Lock()
    running, most, first_inside = [0], [0], threading.Event()

    def computation(click: int) -> None:
        with guard.hold("session A"):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            if click == 0:
                first_inside.set()
                # the second click arrives now; if it got in, `running` would reach 2 below
                second_waiting.wait(WAIT)
            with lock:
                running[0] -= 1

    second_waiting = threading.Event()

    def second_click() -> None:
        first_inside.wait(WAIT)
        second_waiting.set()
        computation(1)

    run_together(lambda: computation(0), second_click)
    assert most[0] == 1
    assert guard.sessions() == 0  # nothing is left behind for a session that has gone


def test_a_guarded_computation_may_call_another_of_its_session():
    guard, done = OneRunAtATime(), []

    def outer() -> None:
        with guard.hold("A"), guard.hold("A"):  # e.g. a page's long computation that adapts inside
            done.append("inner")

    run_together(outer)
    assert done == ["inner"] and guard.sessions() == 0


def test_two_sessions_compute_at_the_same_time():
    guard, both_inside = OneRunAtATime(), threading.Barrier(2)
    met = []

    def computation(session: str) -> None:
        with guard.hold(session):
            both_inside.wait(WAIT)  # only returns if the other session is inside too
            met.append(session)

    run_together(lambda: computation("A"), lambda: computation("B"))
    assert sorted(met) == ["A", "B"]


def test_the_adaptation_page_computes_under_the_guard(checkpoint_dir, monkeypatch):
    from metaviz import one_run

    held = []

    class Recording(OneRunAtATime):
        def hold(self, session):
            held.append(session)
            return super().hold(session)

    monkeypatch.setattr(one_run, "LONG_COMPUTATIONS", Recording())
    write_checkpoint(checkpoint_dir)
    first = visit(start(), "pages/3_Adaptation.py")
    second = visit(start(), "pages/3_Adaptation.py")
    assert "New images recognised before adapting" in all_text(first)
    assert len(held) == 2 and held[0] != held[1]  # one token per session, each its own


# --- shared caches stay as they were -----------------------------------------------------------------


def test_cached_checkpoints_are_unchanged_after_many_sessions_adapt(checkpoint_dir):
    from metaviz import services
    from metaviz.checkpoints import load_checkpoint, parameter_hash
    from pages._shared import load_checkpoint as cached_checkpoint

    path = write_checkpoint(checkpoint_dir)
    for seed in range(4):
        app = visit(start(seed=seed), "pages/3_Adaptation.py")
        assert f"Task number {seed}" in all_text(app)
    cached = cached_checkpoint(str(path), services.file_sha256(path))
    assert parameter_hash(cached) == parameter_hash(load_checkpoint(path))


# --- reproducibility ---------------------------------------------------------------------------------

FINGERPRINT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    import torch
    from metaviz.adaptation import adapt, prediction_changes
    from metaviz.checkpoints import load_checkpoint
    from metaviz.explain import attribute
    from metaviz.tasks import sample_task

    checkpoint = load_checkpoint(sys.argv[1])
    task = sample_task("digits", "test", ways=5, shots=1, queries=3, seed=int(sys.argv[2]))
    trace = adapt(checkpoint, task, steps=3, lr=checkpoint.inner_lr)

    def digest(*arrays):
        h = hashlib.sha256()
        for array in arrays:
            h.update(np.ascontiguousarray(np.asarray(array)).tobytes())
        return h.hexdigest()

    fingerprint = {
        "task": digest(task.support_x, task.support_y, task.query_x, task.query_y),
        "trace": digest(*[p.detach().numpy() for step in trace.params for p in step.values()],
                        trace.support_loss, trace.query_loss, trace.query_probabilities),
        "metrics": [trace.query_accuracy.tolist(), prediction_changes(trace, task.query_y)],
    }
    for method, settings in (("Integrated Gradients", {"n_steps": 16, "refine_to": None}),
                             ("SmoothGrad", {"samples": 4})):
        attribution = attribute(checkpoint, trace, 3, method, task.query_x, **settings)
        fingerprint[method] = digest(attribution.values, attribution.targets)
    print(json.dumps(fingerprint, sort_keys=True))
""")


def fingerprint_in_a_new_process(checkpoint: Path, seed: int) -> dict:
    result = subprocess.run([sys.executable, "-c", FINGERPRINT, str(checkpoint), str(seed)], cwd=REPOSITORY,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_same_checkpoint_seed_and_settings_give_identical_results_across_processes(tmp_path):
    checkpoint = write_checkpoint(tmp_path)
    first, second = (fingerprint_in_a_new_process(checkpoint, seed=4) for _ in range(2))
    assert first == second
    assert set(first) == {"task", "trace", "metrics", "Integrated Gradients", "SmoothGrad"}
    other = fingerprint_in_a_new_process(checkpoint, seed=5)
    assert other["task"] != first["task"] and other["trace"] != first["trace"]  # the fingerprint can tell apart


def test_two_sessions_with_the_same_settings_show_the_same_numbers(checkpoint_dir):
    write_checkpoint(checkpoint_dir)
    shown = []
    for _ in range(2):
        app = visit(start(seed=3, shots=1, queries=2), "pages/3_Adaptation.py")
        shown.append([(metric.label, metric.value) for metric in app.metric])
        shown[-1].append(hashlib.sha256(app.get("plotly_chart")[0].proto.spec.encode()).hexdigest())
    assert shown[0] == shown[1] and len(shown[0]) == 4
