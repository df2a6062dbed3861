"""Bad records are rejected with a reason and their location; good records around them survive."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gamelog.errors import GamelogError

from conftest import shared

GOOD = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}


def _line(record) -> bytes:
    return json.dumps(record).encode() + b"\n"


@pytest.fixture
def mixed_jsonl(tmp_path):
    """Good ShareGPT records (taken from the real dummy_conversation.json) with broken ones between."""
    real = json.load(open(shared("chat/dummy_conversation.json")))[:6]
    lines = [
        _line(real[0]),
        b'{"conversations": [{"from": "human", "value": "cut off\n',  # line 2: truncated JSON
        _line(real[1]),
        _line({"conversations": "not a list"}),  # line 4: wrong type
        _line({"id": "no-conversations"}),  # line 5: missing key
        '{"conversations": [{"from": "human", "value": "caf\xe9"}]}\n'.encode("latin-1"),  # line 6: invalid UTF-8
        _line(real[2]),
        _line({"conversations": [{"from": "narrator", "value": "Once"}]}),  # line 8: unknown role
        _line({"conversations": []}),  # line 9: empty conversation
        _line({"conversations": [{"from": "human", "value": "anyone?"}]}),  # line 10: only player 1
        _line([1, 2, 3]),  # line 11: not an object
        b"\n",  # blank line: not a record
        _line(real[3]),
        _line({"conversations": [{"from": "human", "value": 42}, {"from": "gpt", "value": "x"}]}),  # line 14: wrong type
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(lines))
    return path


EXPECTED_REJECTS = {
    "line 2": "bad_json",
    "line 4": "wrong_type",
    "line 5": "missing_field",
    "line 6": "bad_utf8",
    "line 8": "unknown_role",
    "line 9": "empty_conversation",
    "line 10": "no_player2_move",
    "line 11": "not_an_object",
    "line 14": "wrong_type",
}


def test_mixed_file_keeps_good_records_and_locates_bad_ones(mixed_jsonl, run):
    result = run(mixed_jsonl, format="sharegpt")
    assert {r["location"]: r["reason"] for r in result.rejects} == EXPECTED_REJECTS
    assert result.report.records_read == 13 == result.report.records_converted + result.report.records_rejected
    assert [ep["meta"]["location"] for ep in result.episodes] == ["line 1", "line 3", "line 7", "line 13"]
    for reject in result.rejects:
        assert reject["raw"] and reject["source"] == str(mixed_jsonl)
    assert "unknown role 'narrator'" in next(r["detail"] for r in result.rejects if r["location"] == "line 8")


def test_mixed_file_is_detected_from_its_good_records(mixed_jsonl, run):
    assert run(mixed_jsonl).report.formats == {str(mixed_jsonl): "sharegpt"}


def test_strict_stops_at_the_first_bad_record(mixed_jsonl, run):
    with pytest.raises(GamelogError, match=r"line 2: not valid JSON.*--strict"):
        run(mixed_jsonl, strict=True)


def test_json_array_cut_in_the_middle_keeps_the_complete_items(tmp_path, run):
    data = open(shared("instruct/identity.json"), "rb").read()
    cut = tmp_path / "cut.json"
    cut.write_bytes(data[: len(data) // 2])
    result = run(cut)
    complete = result.report.records_converted
    assert 30 < complete < 60 and result.report.rejected_by_reason == {"bad_json": 1}
    assert result.rejects[0]["location"] == f"item {complete}"
    assert "damaged" in result.rejects[0]["detail"]


def test_trailing_garbage_after_an_array(tmp_path, run):
    path = tmp_path / "trailing.json"
    path.write_text(json.dumps([GOOD, GOOD | {"id": 2}]) + "\n}}garbage", encoding="utf-8")
    result = run(path, dedup="none")
    assert result.report.records_converted == 2 and result.report.rejected_by_reason == {"bad_json": 1}


def test_gzip_cut_short_keeps_what_was_read(tmp_path, run):
    src = open(shared("preference/harmless-base_test.jsonl.gz"), "rb").read()
    path = tmp_path / "short.jsonl.gz"
    path.write_bytes(src[: len(src) // 3])
    result = run(path)
    assert result.report.records_converted > 100
    assert result.report.rejected_by_reason.get("truncated_file") == 1
    truncated = result.by_reason("truncated_file")[0]
    assert truncated["location"].startswith("line ") and "ends early" in truncated["detail"]


def test_unknown_format_rejects_every_record_with_a_hint(tmp_path, run):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"foo": 1}\n{"foo": 2}\n', encoding="utf-8")
    result = run(path)
    assert result.report.rejected_by_reason == {"unknown_format": 2}
    assert "--format NAME" in result.rejects[0]["detail"] and "foo" in result.rejects[0]["detail"]


def test_bom_and_crlf_text(tmp_path, run):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst paragraph.\r\nStill first.\r\n\r\nSecond.\r\n")
    result = run(path)
    assert [ep["turns"][0]["content"] for ep in result.episodes] == ["First paragraph.\nStill first.", "Second."]


def test_record_too_large_is_rejected(tmp_path, run):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "x" * 5000}) + "\n" + json.dumps({"text": "small"}) + "\n", encoding="utf-8")
    result = run(path, max_record_bytes=1000)
    assert result.report.rejected_by_reason == {"record_too_large": 1} and result.report.records_converted == 1


def test_cli_error_is_one_line_without_traceback(tmp_path):
    gamelog = [sys.executable, "-m", "gamelog.cli"]
    done = subprocess.run([*gamelog, "convert", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "no such file" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([*gamelog, "convert", shared("instruct/identity.json"), "--format", "nonsense", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown format 'nonsense'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_raw_data_given_to_pack_is_named_with_the_command_that_converts_it(tmp_path, engine):
    """pack reads what convert writes: a raw file passed to it stops the command in one line, before any work."""
    raw = shared("chat/gsm8k_chat_train.jsonl")
    out = tmp_path / "packed"
    done = subprocess.run([sys.executable, "-m", "gamelog.cli", "pack", raw, "--tokenizer", "builtin", "--engine", engine, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {raw}: not an episodes Parquet file") and f"gamelog convert {raw} --out DIR" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_damaged_episodes_file_behind_a_uri_is_named_before_ray_starts(tmp_path, run):
    """--engine ray with a filesystem URI: every file's footer is read first, so a damaged one is one line, not a Ray traceback."""
    result = run(shared("instruct/alpaca_data_cleaned_1000.json"))
    shard = next(result.out.glob("episodes-*.parquet"))
    damaged = bytearray(shard.read_bytes())
    damaged[-40:-8] = bytes(b ^ 0xFF for b in damaged[-40:-8])  # the footer
    shard.write_bytes(bytes(damaged))
    uri = f"file://{result.out}"
    done = subprocess.run([sys.executable, "-m", "gamelog.cli", "pack", uri, "--tokenizer", "builtin", "--engine", "ray", "--out", str(tmp_path / "packed")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: file://{shard}: not an episodes Parquet file") and len(done.stderr.strip().splitlines()) == 1
