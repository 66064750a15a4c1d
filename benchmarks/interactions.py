"""Interaction latency: the dashboard's work after a widget change, page by page, warm.

Drives app.py through streamlit.testing's AppTest, which runs the page script exactly as the
server does (app.py's sidebar, the page's compute, figure building, serialising every element
to Streamlit's protobuf messages) but without a browser or websocket. For each shipped
checkpoint (digits, the offline default; Omniglot MAML when its data is there) and each page,
one widget is toggled between two values; each value is visited once first (so the caches hold
it, as for a user going back and forth), then every change is timed. The table shows the
median and worst of the timed changes against the 0.3 s target of issue 10.

    METAVIZ_DATA_DIR=../shared/data/omniglot .venv/bin/python benchmarks/interactions.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
# The pages import pages._shared, as under `streamlit run` from the root; benchmarks/pages.py
# (a plain module, on the path as this script's folder) would hide that namespace package.
sys.path[:] = [str(ROOT)] + [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks"]

from benchmarks.verdicts import record  # noqa: E402

TARGET_SECONDS = 0.3


@dataclass(frozen=True)
class Interaction:
    page: str
    what: str
    change: Callable[[AppTest, int], None]  # sets the widget to its value number 0 or 1


def widget(app: AppTest, kind: str, label: str):
    """The first widget of `kind` whose label starts with `label` (keys carry checkpoint hashes)."""
    for element in app.get(kind):
        if element.label.startswith(label):
            return element
    raise LookupError(f"no {kind} labelled {label!r} on this page")


def set_value(kind: str, label: str, values: tuple) -> Callable[[AppTest, int], None]:
    return lambda app, which: widget(app, kind, label).set_value(values[which])


def move_slider_to_ends(label: str) -> Callable[[AppTest, int], None]:
    """A step slider: its last step and the one before (the value range depends on the checkpoint)."""
    def change(app: AppTest, which: int) -> None:
        slider = widget(app, "slider", label)
        slider.set_value(slider.max - which)
    return change


INTERACTIONS = (
    Interaction("pages/1_Checkpoint.py", "page rerun", lambda app, which: None),
    Interaction("pages/2_Task.py", "task number 1 <-> 2", set_value("number_input", "Task number", (1, 2))),
    Interaction("pages/3_Adaptation.py", "step shown", move_slider_to_ends("Adaptation step to show")),
    Interaction("pages/3_Adaptation.py", "adaptation steps 5 <-> 6",
                set_value("number_input", "Adaptation steps", (5, 6))),
    Interaction("pages/4_Saliency.py", "step explained", move_slider_to_ends("Adaptation step")),
    Interaction("pages/4_Saliency.py", "method Saliency <-> Input x Gradient",
                set_value("selectbox", "Method", ("Saliency", "Input × Gradient"))),
    Interaction("pages/5_Layers.py", "step shown", move_slider_to_ends("Adaptation step to show")),
    Interaction("pages/6_Task_embeddings.py", "search: Latin <-> Greek",
                set_value("text_input", "Find alphabets or classes", ("Latin", "Greek"))),
    Interaction("pages/7_Sine_waves.py", "wave number 1 <-> 2", set_value("number_input", "Wave number", (1, 2))),
)


def checkpoints() -> list[tuple[str, str]]:
    found = [("digits-5w1s-maml", "digits"), ("sinusoid-maml", "sinusoid")]
    data = Path(os.environ.get("METAVIZ_DATA_DIR", ROOT.parent / "shared" / "data" / "omniglot"))
    if (ROOT / "checkpoints" / "omniglot-5w1s-maml.safetensors").exists() and data.exists():
        found.append(("omniglot-5w1s-maml", "omniglot"))
    return found


def measure(checkpoint: str, interaction: Interaction, repeats: int) -> list[float]:
    app = AppTest.from_file(APP, default_timeout=300)
    app.query_params["checkpoint"] = checkpoint
    app.run()
    app.switch_page(interaction.page).run()
    for which in (0, 1):  # every value once: the caches are warm from here on
        interaction.change(app, which)
        app.run()
    seconds = []
    for repeat in range(repeats):
        interaction.change(app, repeat % 2)
        start = time.perf_counter()
        app.run()
        seconds.append(time.perf_counter() - start)
        if app.exception:
            raise RuntimeError(f"{interaction.page}: {app.exception}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("METAVIZ_TORCH_THREADS", "1")
    print(f"warm interactions, median and worst of {args.repeats} changes; target < {TARGET_SECONDS} s")
    print(f"{'checkpoint':<20}{'page':<26}{'change':<40}{'median s':>9}{'worst s':>9}  target")
    medians = []
    for checkpoint, _ in checkpoints():
        for interaction in INTERACTIONS:
            if interaction.page == "pages/7_Sine_waves.py" and checkpoint != "sinusoid-maml":
                continue  # the lesson uses its own two sine-wave models, whichever checkpoint is picked
            try:
                seconds = measure(checkpoint, interaction, args.repeats)
            except LookupError:  # e.g. no saliency methods for sine waves
                continue
            median = statistics.median(seconds)
            medians.append(median)
            verdict = "met" if median < TARGET_SECONDS else "MISSED"
            print(f"{checkpoint:<20}{Path(interaction.page).stem:<26}{interaction.what:<40}"
                  f"{median:>9.3f}{max(seconds):>9.3f}  {verdict}", flush=True)
    record(f"every page's warm widget change < {TARGET_SECONDS} s",
           f"medians {min(medians):.2f}-{max(medians):.2f} s over {len(medians)} changes",
           max(medians) < TARGET_SECONDS, "benchmarks/interactions.py")


if __name__ == "__main__":
    main()
