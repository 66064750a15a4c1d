"""Many users at once against `streamlit run` on localhost (issue 8), through websocket clients
that speak Streamlit's protocol (tests/load_client.py).

CI runs a small configuration: 8 users at once, each opening the Adaptation page for a task
of their own and changing the number of steps once (16 adaptations). benchmarks/load.py runs
the full one and reports the times. Nothing here asserts a time: only results, isolation,
unchanged shared models and a bounded memory peak.
"""
import ast
import time
from pathlib import Path

import pytest

from tests.load_client import (
    SHIPPED_DIGITS, Server, Session, checkpoint_folder, expected_accuracies, problems, run_users, user_visit,
)

pytestmark = pytest.mark.slow
REPOSITORY = Path(__file__).resolve().parents[1]
USERS = 8
STEP_CHANGES = (2,)
MAX_PEAK_RSS_MB = 1536  # measured about 1 GB with 8 users (benchmarks/README.md); twice that would be a leak


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    assert SHIPPED_DIGITS.is_file(), "the shipped digits checkpoint is missing"
    return checkpoint_folder(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    with Server(checkpoint_dir) as running:
        yield running


def test_eight_users_at_once_each_get_their_own_correct_results(checkpoint_dir, server):
    checkpoint = checkpoint_dir / SHIPPED_DIGITS.name
    visits = run_users(server.url, USERS, STEP_CHANGES)
    found = [problem for visit in visits for problem in problems(visit, checkpoint, STEP_CHANGES)]
    assert not found, "\n".join(found)
    assert [visit.seed for visit in visits] == list(range(USERS))
    # Afterwards the shared, cached model must be as it was: a new user's first task gives
    # the library's numbers for a model loaded fresh from the file.
    again = user_visit(server.url, 0, STEP_CHANGES)
    assert not problems(again, checkpoint, STEP_CHANGES)
    assert [screen.metrics for screen in again.screens] == [screen.metrics for screen in visits[0].screens]
    peak = server.peak_rss_mb()
    assert peak < MAX_PEAK_RSS_MB, f"the server's memory peaked at {peak:.0f} MB"


def test_a_disconnected_session_can_resume_and_then_expires(checkpoint_dir):
    ttl = 10
    with Server(checkpoint_dir, ("--server.disconnectedSessionTTL", str(ttl))) as server:
        first = Session(server.url)
        shown = first.run("Adaptation", "seed=1")
        steps_id, kind = shown.widgets["Adaptation steps"]
        first.run("Adaptation", "seed=1", {steps_id: (kind, 7)})
        session_id = first.session_id
        first.close()

        resumed = Session(server.url, resume=session_id)  # a network blip: the session is still there
        assert "Recognised after 7 steps" in resumed.run("Adaptation", "seed=1").metrics
        resumed.close()

        time.sleep(ttl + 2)  # waits out the expiry; what follows asserts state, not time
        late = Session(server.url, resume=session_id)
        metrics = late.run("Adaptation", "seed=1").metrics
        late.close()
        assert "Recognised after 7 steps" not in metrics  # its state is gone: a fresh session
        assert any(label.startswith("Recognised after") for label in metrics)


def test_a_double_click_ends_with_the_last_request_answered(checkpoint_dir, server):
    """Two step changes sent back to back, the second while the first may still run: the session
    ends on the second one's answer, with the library's numbers, and no error."""
    checkpoint = checkpoint_dir / SHIPPED_DIGITS.name
    session = Session(server.url)
    steps_id, kind = session.run("Adaptation", "seed=2&shots=1&queries=5").widgets["Adaptation steps"]
    session.send_without_waiting("Adaptation", "seed=2&shots=1&queries=5", {steps_id: (kind, 40)})
    session.send_without_waiting("Adaptation", "seed=2&shots=1&queries=5", {steps_id: (kind, 41)})
    screens = [session.receive()]
    while "Recognised after 41 steps" not in screens[-1].metrics:
        screens.append(session.receive())
    session.close()
    assert len(screens) <= 2  # the first click's run, if it was not cut short, then the second's
    assert not any(screen.errors or screen.exceptions for screen in screens)
    last = screens[-1]
    assert "Task number 2:" in last.text()
    assert (last.metrics["New images recognised before adapting"], last.metrics["Recognised after 41 steps"]) == \
        expected_accuracies(checkpoint, 2, 41)


def test_every_cache_of_the_dashboard_is_bounded():
    """st.cache_data / st.cache_resource on a function with arguments keep at most max_entries
    (or drop entries after a ttl): many users with many tasks cannot grow them without end."""
    unbounded = []
    for path in [REPOSITORY / "app.py", *sorted((REPOSITORY / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                name = ast.unparse(decorator.func if isinstance(decorator, ast.Call) else decorator)
                if name not in ("st.cache_data", "st.cache_resource"):
                    continue
                keywords = {keyword.arg for keyword in getattr(decorator, "keywords", [])}
                has_arguments = bool(node.args.args or node.args.kwonlyargs)
                if has_arguments and not keywords & {"max_entries", "ttl"}:
                    unbounded.append(f"{path.name}: {node.name}")
    assert not unbounded, "caches without max_entries or ttl: " + ", ".join(unbounded)
