"""Shared test set-up: corpus tests read $ROSETTA_DATA, defaulting to ../shared/data beside the repo; the plot,
server and browser tests share the ``translator`` fixture (tiny_translator.py's model)."""

import os
from pathlib import Path

import pytest
import torch

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "ROSETTA_DATA" not in os.environ and _SHARED.is_dir():
    os.environ["ROSETTA_DATA"] = str(_SHARED)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (restored after): tiny models gain nothing from more, and fewer keep
    the server and load tests steady on a busy machine. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def translator():
    """tiny_translator.py's English→Chinese model, loaded once per module, on one thread (restored after): the
    tiny model gains nothing from more, and fewer keep the load tests steady on a busy machine."""
    from tiny_translator import tiny_model_dir

    import rosetta

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield rosetta.load(tiny_model_dir())
    torch.set_num_threads(before)
