"""`gamelog validate` finds each broken rule, names the file and episode, and sets the exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gamelog.validate import validate
from gamelog.write.shards import EPISODE_SCHEMA

from conftest import shared

GAMELOG = [sys.executable, "-m", "gamelog.cli"]


@pytest.fixture
def converted(run):
    return run(shared("preference/dpo_en_demo.json"))


def _rewrite(out, change) -> None:
    """Apply `change` to the episodes (as Python rows) of the only shard and write it back."""
    file = out / "episodes-00000.parquet"
    rows = pq.read_table(file).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA), file)


def test_converted_output_is_valid_and_cli_exits_0(converted):
    done = subprocess.run([*GAMELOG, "validate", str(converted.out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


@pytest.mark.parametrize(
    "rule, change",
    [
        ("player", lambda rows: rows[0]["turns"][0].update(player=3)),
        ("role_player", lambda rows: rows[0]["turns"][0].update(player=2)),
        ("role", lambda rows: rows[1]["turns"][0].update(role="narrator")),
        ("content", lambda rows: rows[2]["turns"][-1].update(content="")),
        ("player1_label", lambda rows: rows[0]["turns"][0].update(optimality="optimal")),
        ("optimality", lambda rows: rows[0]["turns"][-1].update(optimality="great")),
        ("reward", lambda rows: rows[0]["turns"][-1].update(reward=float("nan"))),
        ("group", lambda rows: rows[0].update(rank=3)),
        ("rank", lambda rows: rows[0].update(group_id=None)),
        ("regime", lambda rows: rows[0].update(regime="chitchat")),
        ("unique_id", lambda rows: rows[1].update(episode_id=rows[0]["episode_id"])),
        ("meta", lambda rows: rows[0].update(meta="{not json")),
        ("turns", lambda rows: rows[0].update(turns=[])),
    ],
)
def test_each_rule_is_detected(converted, rule, change):
    _rewrite(converted.out, change)
    report = validate(converted.out)
    assert not report.valid
    assert rule in {p.rule for p in report.listed}, report.listed
    problem = next(p for p in report.listed if p.rule == rule)
    assert problem.file == "episodes-00000.parquet"


def test_episodes_are_checked_in_parts_with_rows_groups_and_ids_across_them(converted, monkeypatch):
    """A file is checked CHECK_EPISODES episodes at a time, so memory does not grow with it; a
    problem still names its row in the file, and a group or an id is checked whole across the parts."""
    from gamelog import validate as validation

    monkeypatch.setattr(validation, "CHECK_EPISODES", 3)
    assert validate(converted.out).valid
    rows = pq.read_table(converted.out / "episodes-00000.parquet").to_pylist()
    assert rows[2]["group_id"] == rows[3]["group_id"] and rows[2]["rank"] == 0  # a pair across parts [0, 3) and [3, 6)

    def change(rows):
        rows[2]["rank"] = 1  # the group has no rank-0 episode now, seen only with both parts
        rows[7]["regime"] = "chitchat"
        rows[8]["episode_id"] = rows[0]["episode_id"]

    _rewrite(converted.out, change)
    problems = validate(converted.out).listed
    assert {"group", "regime", "unique_id"} <= {p.rule for p in problems}
    assert next(p for p in problems if p.rule == "regime").detail.startswith("row 7:")
    assert any(p.detail.startswith(f"group {rows[2]['group_id']}: a ranked group needs a rank-0 episode") and "best rank 1" in p.detail for p in problems if p.rule == "group")


def test_cli_lists_problems_and_exits_1(converted):
    _rewrite(converted.out, lambda rows: rows[0]["turns"][0].update(player=2))
    done = subprocess.run([*GAMELOG, "validate", str(converted.out)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "role_player" in done.stdout and "episodes-00000.parquet" in done.stdout
    as_json = subprocess.run([*GAMELOG, "validate", "--json", str(converted.out)], capture_output=True, text=True)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["problems"] >= 1


def test_report_counts_must_match_the_shards(converted):
    report = json.loads((converted.out / "report.json").read_text())
    report["records_converted"] += 1
    (converted.out / "report.json").write_text(json.dumps(report))
    problems = validate(converted.out).listed
    assert [p.rule for p in problems] == ["report"] and "records_read" in problems[0].detail


def test_wrong_schema_is_reported_not_crashed(tmp_path):
    pq.write_table(pa.table({"episode_id": ["a"], "text": ["b"]}), tmp_path / "episodes-00000.parquet")
    problems = validate(tmp_path).listed
    assert [p.rule for p in problems] == ["schema"] and "turns" in problems[0].detail


def test_damaged_file_is_reported(tmp_path, converted):
    data = (converted.out / "episodes-00000.parquet").read_bytes()
    (tmp_path / "episodes-00000.parquet").write_bytes(data[: len(data) // 2])
    assert [p.rule for p in validate(tmp_path).listed] == ["readable"]


def test_usage_errors_exit_2(tmp_path):
    done = subprocess.run([*GAMELOG, "validate", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert done.returncode == 2 and "no such file" in done.stderr
    done = subprocess.run([*GAMELOG, "validate", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "no episodes-*.parquet" in done.stderr


def test_meta_is_json_in_parquet(converted):
    row = pq.read_table(converted.out / "episodes-00000.parquet").slice(0, 1).to_pylist()[0]
    assert orjson.loads(row["meta"])["location"] == "item 0"


def test_episode_shard_damage_is_named(run):
    result = run(shared("instruct/alpaca_data_cleaned_1000.json"), shard_rows=300)
    shards = sorted(result.out.glob("episodes-*.parquet"))
    assert validate(result.out).valid and len(shards) == 4
    flipped = bytearray(shards[0].read_bytes())
    flipped[len(flipped) // 3] ^= 0x01
    shards[0].write_bytes(bytes(flipped))
    shards[1].write_bytes(shards[1].read_bytes()[:-100])  # truncated
    shards[2].unlink()  # missing
    problems = validate(result.out).listed
    named = {(p.rule, p.file) for p in problems}
    assert ("checksum", shards[0].name) in named
    assert ("readable", shards[1].name) in named
    assert ("missing_shard", shards[2].name) in named


@pytest.mark.parametrize("at", [0.1, 0.2, 0.33, 0.5, 0.66, 0.8, 0.95])
def test_a_flipped_byte_anywhere_is_reported_never_raised(run, tmp_path, at):
    """Wherever the damage lands (header, data page, dictionary, footer), validate and pack answer in one line."""
    result = run(shared("instruct/alpaca_data_cleaned_1000.json"))
    shard = next(result.out.glob("episodes-*.parquet"))
    damaged = bytearray(shard.read_bytes())
    for offset in range(int(len(damaged) * at), int(len(damaged) * at) + 8):
        damaged[offset] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    assert ("checksum", shard.name) in {(p.rule, p.file) for p in validate(result.out).listed}
    done = subprocess.run([*GAMELOG, "pack", str(result.out), "--out", str(tmp_path / "packed"), "--seq-len", "512"], capture_output=True, text=True)
    assert "Traceback" not in done.stderr
    assert done.returncode == 0 or (done.returncode == 2 and shard.name in done.stderr)
    for command in (["inspect", str(result.out)], ["report", str(result.out), "--out", str(tmp_path / "report.html")]):
        done = subprocess.run([*GAMELOG, *command], capture_output=True, text=True)
        assert "Traceback" not in done.stderr, command
        assert done.returncode == 0 or (done.returncode == 2 and shard.name in done.stderr), command
