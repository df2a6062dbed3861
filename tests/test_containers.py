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
