"""Atomic output: write under a temporary name, then rename, so no final name is ever partial."""

from __future__ import annotations

import os
from pathlib import Path


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def publish(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def write_text(path: Path, text: str) -> None:
    tmp = temporary(path)
    tmp.write_text(text, encoding="utf-8")
    publish(tmp, path)
