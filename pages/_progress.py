"""A long computation behind a progress bar, for the pages' "Measure on N tasks" buttons (not a page itself)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from metaviz import services

Result = TypeVar("Result")


def with_progress_bar(compute: Callable[[Callable[[float, str], None]], Result], first_text: str,
                      failure: str) -> Result:
    """`compute(progress)` with a bar that `progress(fraction, text)` moves; the bar goes when it
    is done. Data that is missing or cannot give tasks (an uploaded task, say, but no data of the
    model's own) stops the page with `failure` and the reason, in plain words."""
    from metaviz.data import DataError, DataNotFoundError

    bar = st.progress(0.0, text=first_text)
    try:
        result = compute(lambda fraction, text: bar.progress(fraction, text=text))
    except (DataError, DataNotFoundError, ValueError) as error:
        st.error(f"{failure}: {services.markdown_text(error)}")
        st.stop()
    bar.empty()
    return result
