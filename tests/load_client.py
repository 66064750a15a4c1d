"""Simulated dashboard users: websocket clients that speak Streamlit's protocol (not a test file).

A browser tab talks to `streamlit run` over one websocket (`/_stcore/stream`): it sends a
`BackMsg.rerun_script` (page, query string, widget values) and receives `ForwardMsg`s (the
elements the script draws) until `script_finished`. `Session` does the same with no browser,
so 8 users at once cost a few threads instead of 8 Chromium tabs on a 2-core machine.

Used by tests/test_load.py (a small run in CI) and benchmarks/load.py (the full one).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect

from tests.test_browser import free_port, wait_until_healthy

REPOSITORY = Path(__file__).resolve().parents[1]
SHIPPED_DIGITS = REPOSITORY / "checkpoints" / "digits-5w1s-maml.safetensors"


@dataclass
class Screen:
    """What one script run drew: texts by element kind, metrics, and widget ids by label."""

    texts: list[str] = field(default_factory=list)  # markdown, captions, alerts, headings
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # label -> shown value
    widgets: dict[str, tuple[str, str]] = field(default_factory=dict)  # number inputs: label -> (id, "int"/"double")
    exceptions: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.texts + self.errors + [f"{label}: {value}" for label, value in self.metrics.items()])


class Session:
    """One simulated user: one websocket, one Streamlit session, script runs one after another."""

    def __init__(self, url: str, timeout: float = 300, resume: str | None = None):
        """`resume`: the id of a disconnected session to reconnect to, as a browser does after a
        network blip (the browser's protocol list: "streamlit", its XSRF token, the session id)."""
        self.timeout = timeout
        address = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        protocols = ["streamlit", "no-xsrf-token", resume] if resume else ["streamlit"]
        self.socket = connect(address, subprotocols=protocols, max_size=2**26, open_timeout=timeout)
        self.timings: list[float] = []  # seconds from request to the end of its script run
        self.session_id: str | None = None  # the server's id for this session, from its first answer

    def close(self) -> None:
        self.socket.close()

    def run(self, page: str = "", query: str = "", widgets: dict[str, tuple[str, object]] | None = None) -> Screen:
        """Asks for a script run (as a page load or a widget change does) and collects what it drew."""
        started = time.perf_counter()
        self.send_without_waiting(page, query, widgets or {})
        screen = self._receive_until_finished()
        self.timings.append(time.perf_counter() - started)
        return screen

    def send_without_waiting(self, page: str, query: str, widgets: dict[str, tuple[str, object]]) -> None:
        """A request sent while the previous one may still run (a double click); `receive` collects."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        message = BackMsg()
        message.rerun_script.query_string, message.rerun_script.page_name = query, page
        for widget_id, (kind, value) in widgets.items():
            state = message.rerun_script.widget_states.widgets.add()
            state.id = widget_id
            setattr(state, f"{kind}_value", value)
        self.socket.send(message.SerializeToString())

    def receive(self) -> Screen:
        """The screen of the next script run that finishes."""
        return self._receive_until_finished()

    def _receive_until_finished(self) -> Screen:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        screen = Screen()
        while True:
            message = ForwardMsg()
            message.ParseFromString(self.socket.recv(timeout=self.timeout))
            kind = message.WhichOneof("type")
            if kind == "new_session" and message.new_session.initialize.session_id:
                self.session_id = message.new_session.initialize.session_id
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                _note(screen, message.delta.new_element)
            elif kind == "script_finished":
                if message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    return screen
                screen = Screen()  # a rerun follows (a page switch): only its screen counts


def _note(screen: Screen, element) -> None:
    kind = element.WhichOneof("type")
    if kind in ("markdown", "heading"):
        screen.texts.append(getattr(element, kind).body)
    elif kind == "alert":
        (screen.errors if element.alert.format == 1 else screen.texts).append(element.alert.body)
    elif kind == "metric":
        screen.metrics[element.metric.label] = element.metric.body
    elif kind == "exception":
        screen.exceptions.append(element.exception.message)
    elif kind == "number_input":  # the value kind a rerun must send for it
        value_kind = "int" if element.number_input.data_type == element.number_input.INT else "double"
        screen.widgets[element.number_input.label] = (element.number_input.id, value_kind)


# --- the server ----------------------------------------------------------------------------------


class Server:
    """`streamlit run app.py` on a free localhost port, with the given checkpoint folder."""

    def __init__(self, checkpoint_dir: Path, extra_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "METAVIZ_CHECKPOINT_DIR": str(checkpoint_dir), "PYTHONPATH": str(REPOSITORY),
               "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *extra_args],
            cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_healthy(self.url, self.process, timeout=60)
        except RuntimeError:
            self.stop()
            raise

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (Linux: VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def checkpoint_folder(directory: Path) -> Path:
    """A folder with the shipped digits checkpoint (copied: the shipped file is never touched)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED_DIGITS, directory / SHIPPED_DIGITS.name)
    return directory


# --- one user's visit ------------------------------------------------------------------------------


@dataclass
class Visit:
    seed: int
    screens: list[Screen]
    timings: list[float]
    error: str | None = None


def expected_accuracies(checkpoint_path: Path, seed: int, steps: int) -> tuple[str, str]:
    """What the Adaptation page must show for this task: accuracy before and after, as it formats them."""
    from metaviz.adaptation import adapt
    from metaviz.checkpoints import load_checkpoint
    from metaviz.tasks import sample_task

    checkpoint = load_checkpoint(checkpoint_path)
    task = sample_task(checkpoint.dataset, checkpoint.test_split, ways=checkpoint.ways, shots=1, queries=5, seed=seed)
    trace = adapt(checkpoint, task, steps=steps, lr=checkpoint.inner_lr)
    return f"{100 * trace.query_accuracy[0]:.0f}%", f"{100 * trace.query_accuracy[-1]:.0f}%"


def user_visit(url: str, seed: int, step_changes: tuple[int, ...], start: threading.Barrier | None = None) -> Visit:
    """Opens the Adaptation page for task `seed` (a link with ?seed=), then changes the number of
    adaptation steps once per entry of `step_changes`: each is a new adaptation."""
    screens: list[Screen] = []
    session = None
    try:
        session = Session(url)
        if start is not None:
            start.wait()
        query = f"seed={seed}&shots=1&queries=5"
        screens.append(session.run("Adaptation", query))
        steps_id, kind = screens[-1].widgets["Adaptation steps"]
        for steps in step_changes:
            screens.append(session.run("Adaptation", query, {steps_id: (kind, steps)}))
        return Visit(seed, screens, session.timings)
    except Exception as error:  # reported per user: one failing user must not hide the others' results
        return Visit(seed, screens, session.timings if session else [], f"{type(error).__name__}: {error}")
    finally:
        if session is not None:
            session.close()


def run_users(url: str, users: int, step_changes: tuple[int, ...], first_seed: int = 0) -> list[Visit]:
    """`users` visits at once, each with its own task seed; their results in seed order."""
    start = threading.Barrier(users)
    results: dict[int, Visit] = {}

    def one(seed: int) -> None:
        results[seed] = user_visit(url, seed, step_changes, start)

    threads = [threading.Thread(target=one, args=(first_seed + index,)) for index in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[seed] for seed in sorted(results)]


def problems(visit: Visit, checkpoint_path: Path, step_changes: tuple[int, ...]) -> list[str]:
    """What is wrong with a visit: errors, another user's task, or numbers that differ from the library's."""
    from metaviz.checkpoints import load_checkpoint

    found = [visit.error] if visit.error else []
    if len(visit.screens) != 1 + len(step_changes):
        found.append(f"seed {visit.seed}: {len(visit.screens)} of {1 + len(step_changes)} script runs finished")
    default_steps = load_checkpoint(checkpoint_path).inner_steps
    for screen, steps in zip(visit.screens, (default_steps, *step_changes)):
        text = screen.text()
        if screen.exceptions or screen.errors:
            found.append(f"seed {visit.seed}: {screen.exceptions + screen.errors}")
        if f"Task number {visit.seed}:" not in text:
            found.append(f"seed {visit.seed}: its task is not the one shown")
        others = set(re.findall(r"Task number (\d+)", text)) - {str(visit.seed)}
        if others:
            found.append(f"seed {visit.seed}: sees task(s) {sorted(others)} of another user")
        before, after = expected_accuracies(checkpoint_path, visit.seed, steps)
        shown = (screen.metrics.get("New images recognised before adapting"),
                 screen.metrics.get(f"Recognised after {steps} step{'s' if steps != 1 else ''}"))
        if shown != (before, after):
            found.append(f"seed {visit.seed}, {steps} steps: shows {shown}, the library gives {(before, after)}")
    return found


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation: every reported figure is a measured time)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]
