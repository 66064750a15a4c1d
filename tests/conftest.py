"""Shared fixtures.

Omniglot tests need the real data. Locally they skip when it is absent; CI sets
METAVIZ_REQUIRE_DATA=1 so that a missing data directory fails instead of skipping.
"""
import os
from pathlib import Path

import pytest


def _omniglot_present(directory: Path) -> bool:
    return all(
        (directory / f"{subset}.zip").exists() or (directory / subset).is_dir()
        for subset in ("images_background", "images_evaluation")
    )


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    from metaviz.data import data_dir

    directory = data_dir()
    if not _omniglot_present(directory):
        message = f"Omniglot not found in {directory} (set METAVIZ_DATA_DIR)"
        if os.environ.get("METAVIZ_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return directory
