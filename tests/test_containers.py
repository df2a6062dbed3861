"""Input containers (gz, zst, parquet, csv, saved datasets) and output readable by common tools."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from conftest import shared

SOURCE = "chat/gsm8k_chat_train.jsonl"


@pytest.fixture
def records():
    return [json.loads(line) for line in open(shared(SOURCE), encoding="utf-8")]


def _contents(result) -> list[list[str]]:
    return [[t["content"] for t in ep["turns"]] for ep in result.episodes]


@pytest.fixture
def baseline(run):
    return run(shared(SOURCE))


def test_gzip_and_zstd_jsonl_match_plain(tmp_path, baseline, run):
    data = open(shared(SOURCE), "rb").read()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    for name in ("a.jsonl.gz", "b.jsonl.zst"):
        assert _contents(run(tmp_path / name)) == _contents(baseline)


def test_json_array_gz_and_ndjson(tmp_path, records, baseline, run):
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(records).encode()))
    shutil.copy(shared(SOURCE), tmp_path / "b.ndjson")
    for name in ("a.json.gz", "b.ndjson"):
        assert _contents(run(tmp_path / name)) == _contents(baseline)


def test_parquet_with_nested_messages(tmp_path, records, baseline, run):
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "chat.parquet")
    result = run(tmp_path / "chat.parquet")
    assert _contents(result) == _contents(baseline)
    assert result.episodes[3]["meta"]["location"] == "row 3"


def test_saved_dataset_directory(tmp_path, records, baseline, run):
    import datasets

    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    result = run(tmp_path / "saved")
    assert _contents(result) == _contents(baseline)


def test_csv_with_text_column_and_a_broken_row(tmp_path, run):
    texts = [json.loads(line)["text"] for line in open(shared("text/c4_demo.jsonl"), encoding="utf-8")][:20]
    import csv

    with open(tmp_path / "web.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "body"])
        writer.writerows([[f"https://example.org/{i}", t] for i, t in enumerate(texts)])
        handle.write("only-one-field-and-a,second,third\n")
    result = run(tmp_path / "web.csv", text_column="body")
    assert [ep["turns"][0]["content"] for ep in result.episodes] == texts
    assert result.report.rejected_by_reason == {"bad_csv": 1}


def test_directory_of_mixed_formats(tmp_path, run):
    for relative in ("instruct/identity.json", "qa/NQ-open.dev.jsonl", "text/c4_demo.jsonl"):
        shutil.copy(shared(relative), tmp_path / relative.split("/")[1])
    result = run(tmp_path)
    assert sorted(result.report.formats.values()) == ["alpaca", "qa", "text"]
    assert result.report.episodes_by_regime == {"pretrain": 300, "sft": 91 + 3610}


def test_output_reads_in_pyarrow_polars_duckdb_and_datasets(run):
    import datasets
    import duckdb
    import polars as pl

    result = run(shared("chat/glaive_toolcall_en_demo.json"), shard_rows=100)
    files = sorted(str(p) for p in result.out.glob("episodes-*.parquet"))
    assert len(files) == 3 and [s["name"] for s in result.report.shards] == [p.rsplit("/", 1)[1] for p in files]
    expected = result.report.episodes_written
    assert pq.ParquetDataset(files).read().num_rows == expected
    frame = pl.read_parquet(files)
    assert frame.height == expected and frame.schema["turns"] == pl.List(pl.Struct)
    glob = str(result.out / "episodes-*.parquet")
    assert duckdb.sql(f"select count(*) from read_parquet('{glob}') where len(turns) > 0").fetchall()[0][0] == expected
    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
    assert loaded.num_rows == expected and loaded[0]["turns"][0]["player"] in (1, 2)


def test_rerun_into_same_directory_removes_stale_shards(run, tmp_path):
    from pathlib import Path

    from gamelog.convert import ConvertOptions, convert

    out = tmp_path / "same"
    convert([shared("chat/glaive_toolcall_en_demo.json")], out=out, options=ConvertOptions(shard_rows=50))
    assert len(list(out.glob("episodes-*.parquet"))) == 6
    convert([shared("instruct/identity.json")], out=out)
    assert sorted(p.name for p in out.glob("*")) == ["episodes-00000.parquet", "report.json"]
    assert not list(Path(out).glob(".*"))  # no temporary files left behind


def test_csv_fields_are_read_as_their_text_so_numeric_answers_are_kept_exactly(tmp_path, run):
    """GSM8K's final answers are numbers: a CSV of question and final answer has a column of
    numbers only, which stays the moves' text ("72", "007"), not integers (7) that the QA format
    rejected, every row of them."""
    import csv

    rows = [json.loads(line)["messages"] for line in open(shared(SOURCE), encoding="utf-8")]
    pairs = [(m[1]["content"].removesuffix("\nSolution:"), m[2]["content"].rpartition("####")[2].strip(" !")) for m in rows]
    pairs = [(q, a) for q, a in pairs if a.isdigit()]  # whole numbers (others are written "1,200")
    pairs += [("What is the agent's number?", "007"), ("A thousand, written with a leading zero?", "01000")]
    with open(tmp_path / "gsm8k.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        writer.writerows(pairs)
    result = run(tmp_path / "gsm8k.csv", dedup="none")
    assert len(pairs) > 100 and all(answer.isdigit() for _, answer in pairs)
    assert result.report.records_rejected == 0
    assert _contents(result) == [[q, a] for q, a in pairs]


def test_csv_bytes_that_are_not_utf8_reject_their_row_only(tmp_path, run, capfd):
    """In a well-formed row and in a row with a field too many: each row is one reject with its
    location, the rows around them are kept, and nothing is printed (pyarrow alone stopped the file
    at the first such byte and printed a traceback for a bad row)."""
    body = b"instruction,output\nfirst,one\n\xff\xfe bad,two\nthird,three\nx\xff,y,z\nfifth,five\n"
    (tmp_path / "mixed.csv").write_bytes(body)
    result = run(tmp_path / "mixed.csv")
    assert _contents(result) == [["first", "one"], ["third", "three"], ["fifth", "five"]]
    assert result.report.rejected_by_reason == {"bad_utf8": 1, "bad_csv": 1}
    assert result.by_reason("bad_utf8")[0]["location"] == "row 1" and "'instruction'" in result.by_reason("bad_utf8")[0]["detail"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_kto_csv_reads_its_labels_from_their_text(tmp_path, run):
    import csv

    records = json.load(open(shared("preference/kto_en_demo.json"), encoding="utf-8"))
    with open(tmp_path / "kto.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "completion", "label"])
        writer.writerows([r["messages"][0]["content"], r["messages"][1]["content"], r["label"]] for r in records)  # True/False as text
    result = run(tmp_path / "kto.csv", dedup="none")
    assert result.report.records_converted == len(records)
    labels = [r["label"] for r in records]
    assert 0 < sum(labels) < len(labels)
    from_json = run(shared("preference/kto_en_demo.json"), dedup="none")
    assert [ep["outcome"] for ep in result.episodes] == [ep["outcome"] for ep in from_json.episodes]
    assert [ep["outcome"] > 0 for ep in result.episodes] == labels
