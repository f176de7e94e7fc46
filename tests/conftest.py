"""Shared test set-up: corpus tests read $ROSETTA_DATA, defaulting to ../shared/data beside the repo."""

import os
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "ROSETTA_DATA" not in os.environ and _SHARED.is_dir():
    os.environ["ROSETTA_DATA"] = str(_SHARED)
