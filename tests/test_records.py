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
