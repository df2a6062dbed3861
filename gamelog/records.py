"""The records of a game log: the one source of truth for every schema gamelog writes.

An `Episode` is one game between player 1 (the human side: users, system prompts, documents,
tool results) and player 2 (the model: answers, tool calls, its own reasoning). The Arrow
schema of the episodes Parquet and the JSON Schema files in `schemas/` are derived from these
models, never written by hand. Converters build plain dicts of this shape on their hot path;
the models check the edges (tests, `validate`, recipes).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Player = Literal[1, 2]
Role = Literal["system", "user", "assistant", "tool_call", "tool", "thought", "context", "text"]
Regime = Literal["pretrain", "sft", "preference", "feedback"]
Game = Literal["cooperative", "adversarial", "unknown"]
Optimality = Literal["optimal", "suboptimal", "unknown"]

# Which player owns a move with this role. `text` is raw pre-training text: the model imitates
# all of it, so it is player 2's (sub-optimal) play.
ROLE_PLAYER: dict[str, int] = {
    "system": 1,
    "user": 1,
    "tool": 1,
    "context": 1,
    "assistant": 2,
    "tool_call": 2,
    "thought": 2,
    "text": 2,
}


class Turn(BaseModel):
    """One move of the game."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    player: Player = Field(description="1 = the human side (user, system, tools, documents); 2 = the model.")
    role: Role = Field(description="Normalised role of the move; it fixes the player (see ROLE_PLAYER).")
    name: str | None = Field(None, description="Speaker or tool name as in the source.")
    content: Annotated[str, Field(min_length=1)] = Field(description="Text of the move; never empty.")
    reward: float | None = Field(None, description="Reward for this move, if the source gives one.")
    optimality: Optimality = Field(
        "unknown", description="optimal / suboptimal for player-2 moves with a known label; unknown otherwise."
    )
    weight: float | None = Field(None, description="Explicit loss weight from the source (e.g. loss_weight).")


class Episode(BaseModel):
    """One game: a dialogue, an instruction and its answer, a document, one branch of a preference pair."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    episode_id: str = Field(description="Stable id derived from the source file, the record's position and the branch.")
    source: str = Field(description="Input file (or dataset id) the episode came from.")
    regime: Regime = Field(description="Training regime the data belongs to.")
    game: Game = Field("cooperative", description="cooperative, adversarial (red-team data), or unknown.")
    task: str | None = Field(None, description="Kind of game: chat, instruct, qa, tool-use, reasoning, text, ...")
    group_id: str | None = Field(None, description="Shared by episodes that answer the same prompt.")
    rank: int | None = Field(None, ge=0, description="Rank inside the group; 0 is best.")
    outcome: float | None = Field(None, description="Episode-level reward, if any.")
    turns: list[Turn] = Field(min_length=1, description="The moves, in order.")
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Anything kept from the source (ids, tools, location); JSON in Parquet."
    )


class Reject(BaseModel):
    """An input record that could not be converted, with why and where."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    reason: str = Field(description="Stable reason code, e.g. bad_json, missing_field, unknown_role.")
    detail: str = Field(description="One sentence for a person: what is wrong and how to fix it.")
    source: str = Field(description="Input file (or dataset id).")
    location: str = Field(description="Where in the source: 'line 12', 'item 3', 'row 7', 'data[0].paragraphs[2].qas[1]'.")
    raw: str | None = Field(None, description="The raw record text (cut to a bounded length).")


class ArrowType(str):
    """Annotated metadata naming the Arrow type of a field where Python's int/float is too wide."""


Int32 = Annotated[int, ArrowType("int32")]
Int8 = Annotated[int, ArrowType("int8")]
UInt8 = Annotated[int, ArrowType("uint8")]
Float32 = Annotated[float, ArrowType("float32")]


class PackedRow(BaseModel):
    """One training row of seq_len tokens or fewer: segments (episodes or their parts) packed end to end."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    input_ids: list[Int32] = Field(description="Token ids; each segment's ids are exactly its rendered episode's encoding.")
    loss_mask: list[UInt8] = Field(description="1 where the token is a training target (unshifted).")
    position_ids: list[Int32] = Field(description="Restart at 0 at each segment, so attention stays inside it.")
    seq_lens: list[Int32] = Field(description="Segment lengths; cu_seqlens is their running sum.")
    player: list[Int8] = Field(description="Player (1 or 2) owning each token.")
    reward: list[Float32] | None = Field(None, description="Reward of the move each token belongs to (0 where none); null when no segment has rewards.")
    returns: list[Float32] | None = Field(None, description="With --returns GAMMA: discounted sum of this and later player-2 rewards.")
    weight: list[Float32] | None = Field(None, description="Loss weight of each token's move where the source gives one (1 elsewhere); null when no segment has weights.")
    episode_ids: list[str] = Field(description="Episode id of each segment (':k' marks part k of a split episode).")


class PreferenceRow(BaseModel):
    """One (chosen, rejected) pair sharing a prompt: prompt_ids + chosen_ids is the chosen episode's encoding."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    prompt_ids: list[Int32]
    chosen_ids: list[Int32]
    rejected_ids: list[Int32]
    chosen_mask: list[UInt8] = Field(description="1 on the chosen answer's trained tokens.")
    rejected_mask: list[UInt8] = Field(description="1 on the rejected answer's trained tokens.")
    margin: Float32 = Field(description="Outcome of the chosen minus outcome of the rejected episode.")
    group_id: str
    chosen_id: str
    rejected_id: str


class PackManifest(BaseModel):
    """manifest.json of a pack run: settings, tokenizer, counts that add up, and each shard's checksum."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    gamelog_version: str
    settings: dict[str, Any]
    tokenizer: dict[str, str] = Field(description="name and sha256 fingerprint of the tokenizer files.")
    template: str
    objective: str
    counts: dict[str, int] = Field(description="episodes_read, episodes_packed, episodes_rejected, episodes_skipped, segments, rows, tokens_total, tokens_trained, tokens_dropped, tokens_truncated.")
    rejected_by_reason: dict[str, int]
    efficiency: float = Field(description="tokens_total / (rows * seq_len).")
    shards: list[dict[str, Any]] = Field(description="name, rows and sha256 of each shard.")


class ConvertReport(BaseModel):
    """report.json of a convert run. records_read == records_converted + records_rejected."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    gamelog_version: str
    inputs: list[str]
    formats: dict[str, str] = Field(description="Format used for each input file.")
    settings: dict[str, Any]
    records_read: int
    records_converted: int
    records_rejected: int
    rejected_by_reason: dict[str, int]
    duplicates_removed: int = Field(description="Records whose episodes repeat an earlier record's (reason 'duplicate').")
    episodes_written: int
    turns_written: int
    episodes_by_regime: dict[str, int]
    shards: list[dict[str, Any]] = Field(description="name, rows and sha256 of each episodes shard.")


# ---- Arrow schemas, derived from the models -------------------------------------------------

def _arrow_type(annotation: Any):
    import pyarrow as pa

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        named = [a for a in args[1:] if isinstance(a, ArrowType)]
        return getattr(pa, named[0])() if named else _arrow_type(args[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _arrow_type(inner)
    if origin is Literal:
        return pa.int8() if all(isinstance(a, int) for a in args) else pa.string()
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    if origin is dict:
        return pa.string()  # free-form: stored as a JSON string
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(_arrow_fields(annotation))
    return {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[annotation]


def _nullable(info) -> bool:
    args = typing.get_args(info.annotation)
    return type(None) in args


def _arrow_fields(model: type[BaseModel]) -> list:
    import pyarrow as pa

    return [
        pa.field(name, _field_type(info), nullable=_nullable(info), metadata={"description": info.description or ""})
        for name, info in model.model_fields.items()
    ]


def _field_type(info):
    import pyarrow as pa

    named = [m for m in info.metadata if isinstance(m, ArrowType)]  # pydantic keeps a field's own Annotated here
    return getattr(pa, named[0])() if named else _arrow_type(info.annotation)


def arrow_schema(model: type[BaseModel]):
    """The Arrow schema of a model's Parquet table (dict fields become JSON strings)."""
    import pyarrow as pa

    return pa.schema(_arrow_fields(model))


def build_now(*models: type[BaseModel]) -> None:
    """Build these models' validators and serializers now rather than at their first use (every
    model defers it: defer_build). The first one built loads pydantic's schema machinery, 15-17 ms:
    a command builds its report's model while its workers run batches, not after the last one."""
    for model in models:
        model.model_rebuild(force=True)


def json_fields(model: type[BaseModel]) -> list[str]:
    """Fields stored as JSON strings in Arrow (free-form dicts)."""
    return [n for n, i in model.model_fields.items() if typing.get_origin(i.annotation) is dict]


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "episode": Episode,
    "reject": Reject,
    "convert-report": ConvertReport,
    "packed-row": PackedRow,
    "preference-row": PreferenceRow,
    "pack-manifest": PackManifest,
}


def json_schemas() -> dict[str, dict]:
    """JSON Schema documents keyed by file name, as committed under schemas/."""
    return {f"{name}.schema.json": model.model_json_schema() for name, model in SCHEMA_MODELS.items()}
