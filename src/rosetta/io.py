"""Small file helpers shared by the parts that stand alone (``data``, ``checkpoint``)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (``hashlib.file_digest``, Python ≥ 3.11)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
