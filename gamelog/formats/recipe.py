"""Recipes: declarative TOML that maps a dataset whose keys differ onto a known format.

    # pipelines/dolly.toml
    format = "alpaca"
    task = "instruct"
    [columns]            # key the format expects = key in the dataset
    input = "context"
    output = "response"

A `[message]` table renames keys inside message lists (`from = "speaker"`, `value = "text"`).
A recipe may also add role names (`[roles] bot = "assistant"`), set `game = "adversarial"` for
red-team data, and fix the text `split` or the `unanswerable` policy.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gamelog.errors import GamelogError
from gamelog.records import Game, Role


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: convert without a recipe does not pay for it

    name: str = Field(description="Dataset the recipe is for.")
    description: str = ""
    format: str = Field("auto", description="A format name from `gamelog convert --help`, or auto.")
    columns: dict[str, str] = Field(default_factory=dict, description="Key the format expects = key in the dataset.")
    message: dict[str, str] = Field(default_factory=dict, description="Inside message lists: key the format expects = key in the dataset.")
    roles: dict[str, Role] = Field(default_factory=dict, description="Extra role names -> normalised role.")
    task: str | None = None
    game: Game = "cooperative"
    split: Literal["file", "line", "blank-line"] | None = None
    unanswerable: Literal["keep", "reject"] | None = None

    def rename(self, record):
        """Apply the column mapping to one record (records that are not objects pass unchanged)."""
        if not (self.columns or self.message) or not isinstance(record, dict):
            return record
        record = _renamed(record, self.columns)
        if self.message:
            for key, value in record.items():
                if isinstance(value, list):
                    record[key] = [_renamed(m, self.message) if isinstance(m, dict) else m for m in value]
        return record


def _renamed(record: dict, mapping: dict[str, str]) -> dict:
    record = dict(record)
    for target, source in mapping.items():
        if source in record:
            record[target] = record.pop(source)
    return record


def load_recipe(path: str) -> Recipe:
    file = Path(path)
    if not file.exists() and (Path("pipelines") / f"{path}.toml").exists():
        file = Path("pipelines") / f"{path}.toml"
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GamelogError(f"recipe {path}: no such file; pass a path like pipelines/NAME.toml.") from None
    except tomllib.TOMLDecodeError as exc:
        raise GamelogError(f"recipe {file}: not valid TOML ({exc}).") from None
    data.setdefault("name", file.stem)
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise GamelogError(f"recipe {file}: {problems}.") from None
