"""The records models are the one source of truth: schema files and Arrow schema follow them."""

import pyarrow as pa
import pytest
from pydantic import ValidationError

from gamelog.records import ROLE_PLAYER, Episode, Role, Turn, arrow_schema
from gamelog.schemas import check_schemas

from conftest import ROOT


def test_committed_json_schemas_are_current():
    assert check_schemas(ROOT / "schemas") == [], "run `gamelog schemas --out schemas` and commit the result"


def test_arrow_schema_nests_turns_as_structs():
    schema = arrow_schema(Episode)
    turns = schema.field("turns").type
    assert pa.types.is_list(turns) and pa.types.is_struct(turns.value_type)
    assert turns.value_type.field("player").type == pa.int8()
    assert schema.field("meta").type == pa.string()  # free-form dict stored as JSON
    assert schema.field("rank").nullable and not schema.field("episode_id").nullable


def test_every_role_has_an_owner():
    assert set(ROLE_PLAYER) == set(Role.__args__)


@pytest.mark.parametrize("bad", [{"player": 3}, {"content": ""}, {"role": "narrator"}, {"colour": "red"}])
def test_turn_model_refuses_invalid_moves(bad):
    good = {"player": 1, "role": "user", "content": "hi"}
    with pytest.raises(ValidationError):
        Turn.model_validate(good | bad)


def test_episode_needs_a_turn():
    with pytest.raises(ValidationError, match="turns"):
        Episode.model_validate({"episode_id": "e", "source": "s", "regime": "sft", "turns": []})


def test_episode_tables_built_from_buffers_are_arrows_own():
    """episode_table builds its columns from buffers (and a field no row fills as nulls): the same
    table as Arrow's own from_pylist, nulls, ASCII and other text alike."""
    from gamelog.write.shards import EPISODE_SCHEMA, episode_table

    def move(player, role, content, **more):
        return {"player": player, "role": role, "name": None, "content": content, "reward": None, "optimality": "unknown", "weight": None} | more

    def episode(k, turns, **more):
        return {"episode_id": f"e{k}", "source": "s.jsonl", "regime": "sft", "game": "cooperative", "task": "chat", "group_id": None, "rank": None, "outcome": None, "turns": turns, "meta": {}} | more

    plain = [episode(0, [move(1, "user", "Hi"), move(2, "assistant", "Hello!")]), episode(1, [move(1, "user", "Grüße, 日本 🎉"), move(2, "assistant", "ok")])]
    mixed = plain + [episode(2, [move(1, "user", "x", name="ann"), move(2, "assistant", "y", reward=1.0, weight=0.5)], group_id="g", rank=0, outcome=0.5, meta={"id": 7})]
    for rows in (plain, mixed):
        ours = episode_table([dict(r, turns=[dict(t) for t in r["turns"]]) for r in rows])
        theirs = pa.Table.from_pylist([r | {"meta": "{}" if not r["meta"] else '{"id":7}'} for r in rows], schema=EPISODE_SCHEMA)
        assert ours.equals(theirs)
    assert episode_table(plain).column("group_id").null_count == 2
