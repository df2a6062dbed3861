"""Packed shards (or episodes) as a Hugging Face `datasets.Dataset`.

    from gamelog.hf import load
    dataset = load("shards/")          # or an episodes directory from gamelog convert
"""

from __future__ import annotations

import json
from pathlib import Path


def load(path: str | Path):
    import datasets

    path = Path(path)
    if (path / "manifest.json").exists():
        files = [str(path / s["name"]) for s in json.loads((path / "manifest.json").read_text(encoding="utf-8"))["shards"]]
    else:
        files = sorted(str(p) for p in path.glob("episodes-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{path}: no packed shards (manifest.json) nor episodes-*.parquet here.")
    return datasets.load_dataset("parquet", data_files=files, split="train")
