"""How readers cut their input into batches. JSON Lines files are cut into byte ranges
(`LineBatch`): the records read from the ranges, wherever the cuts fall, are the records read from
the whole stream, with the same line numbers, values, errors and raw text. A streamed JSON array's
batches are bounded by the bytes read, as batches of lines are."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import pytest

from gamelog.read import json as jsonl
from gamelog.read.items import BATCH_BYTES, RAW_LIMIT, Item

from conftest import arrow_held_while, shared


def _items(batches) -> list[tuple]:
    return [(i.location, i.value, i.error, i.raw) for batch in batches for i in batch]


def _whole(path: Path, limit: int) -> list[tuple]:
    return _items([list(jsonl._lines(path, limit))])


@pytest.fixture
def small_cuts(monkeypatch):
    """Batches of a few lines or bytes, read a few bytes at a time: cuts fall everywhere."""
    monkeypatch.setattr(jsonl, "BATCH_SIZE", 3)
    monkeypatch.setattr(jsonl, "BATCH_BYTES", 200)
    monkeypatch.setattr(jsonl, "READ_BLOCK", 64)


@pytest.mark.parametrize("relative", ["chat/gsm8k_chat_train.jsonl", "qa/NQ-open.dev.jsonl", "text/c4_demo.jsonl"])
def test_ranges_of_real_files_read_as_the_whole_file(relative):
    path = Path(shared(relative))
    batches = list(jsonl.read_jsonl(path))
    assert len(batches) > 1 and all(isinstance(b, jsonl.LineBatch) for b in batches)
    assert _items(batches) == _whole(path, jsonl.DEFAULT_MAX_RECORD_BYTES)
    assert batches[0].start == 0 and all(a.stop == b.start for a, b in zip(batches, batches[1:]))
    assert batches[-1].stop == path.stat().st_size


def test_small_cuts_of_a_real_file_read_as_the_whole_file(small_cuts):
    path = Path(shared("chat/stock_toolcall_training.jsonl"))
    batches = list(jsonl.read_jsonl(path))
    assert len(batches) > 50
    assert _items(batches) == _whole(path, jsonl.DEFAULT_MAX_RECORD_BYTES)


def test_edge_lines_keep_their_numbers_errors_and_raw_text_across_cuts(tmp_path, small_cuts):
    """A byte-order mark, blank lines, CRLF, bad JSON, bad UTF-8, a line over the record limit
    (longer than a read block) and a last line without a newline, with cuts all around them."""
    lines = [b'\xef\xbb\xbf{"text": "first"}', b"", b"   ", b'{"text": "crlf"}\r', b"{not json", b'{"text": "\xff bad utf-8"}']
    lines += [b'{"text": "' + b"x" * 500 + b'"}', b'{"text": "after the long one"}']
    lines += [f'{{"text": "line {k}"}}'.encode() for k in range(40)] + [b"", b""]
    path = tmp_path / "edges.jsonl"
    path.write_bytes(b"\n".join(lines) + b'\n{"text": "no newline at the end"}')
    limit = 300  # the long line is over it
    batches = list(jsonl.read_jsonl(path, max_record_bytes=limit))
    read = _items(batches)
    assert read == _whole(path, limit)
    reasons = {location: error[0] for location, _, error, _ in read if error}
    assert reasons == {"line 5": "bad_json", "line 6": "bad_utf8", "line 7": "record_too_large"}
    assert read[0][1] == {"text": "first"} and read[-1][:2] == (f"line {len(lines) + 1}", {"text": "no newline at the end"})


def test_a_batch_crosses_to_a_worker_as_its_range_and_reads_the_same_there(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n')
    batch = next(iter(jsonl.read_jsonl(path)))
    copy = pickle.loads(pickle.dumps(batch))
    assert len(pickle.dumps(batch)) < 200
    assert _items([copy]) == _items([batch]) == [("line 1", {"a": 1}, None, b'{"a": 1}\n'), ("line 2", {"a": 2}, None, b'{"a": 2}\n')]


def test_a_file_that_shrinks_after_it_was_cut_ends_in_a_reject_not_in_silence(tmp_path):
    path = tmp_path / "shrinks.jsonl"
    path.write_bytes(b"".join(f'{{"a": {k}}}\n'.encode() for k in range(10)))
    batch = next(iter(jsonl.read_jsonl(path)))
    path.write_bytes(b'{"a": 0}\n{"a": 1}\n')
    read = _items([batch])
    assert [value for _, value, _, _ in read[:2]] == [{"a": 0}, {"a": 1}]
    assert read[2][0] == "line 3" and read[2][2][0] == "truncated_file" and "changed during the run" in read[2][2][1]


def test_a_named_pipe_is_read_here_once(tmp_path):
    """A pipe cannot be read twice (once to cut, once per range): its lines are read in this process."""
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    writer = threading.Thread(target=path.write_bytes, args=(b'{"a": 1}\n\n{"a": 2}\n',))
    writer.start()
    batches = list(jsonl.read_jsonl(path))
    writer.join()
    assert [type(b) for b in batches] == [list]
    assert [(i.location, i.value) for i in batches[0]] == [("line 1", {"a": 1}), ("line 3", {"a": 2})]


def test_compressed_files_are_read_here_as_before():
    path = Path(shared("preference/harmless-base_test.jsonl.gz"))
    batches = jsonl.read_jsonl(path)
    first = next(iter(batches))
    assert isinstance(first, list) and all(isinstance(i, Item) for i in first)


def test_a_file_of_blank_lines_then_records_is_converted_from_its_first_records(run, tmp_path, monkeypatch):
    """The format is told from the first records even when the first batches hold only blank lines."""
    monkeypatch.setattr(jsonl, "BATCH_SIZE", 4)
    path = tmp_path / "late.jsonl"
    path.write_text("\n" * 10 + '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    result = run(path)
    assert result.report.formats[str(path)] == "openai"
    assert len(result.episodes) == 1 and result.report.records_read == 1


def test_a_streamed_json_array_is_cut_into_batches_by_the_bytes_read(tmp_path):
    """Records of 10 KB: batches of about BATCH_BYTES, not of 1,024 records (10 MB, and many times
    that in Python objects, in flight per batch)."""
    records = [{"instruction": f"task {k}", "output": "word " * 2000} for k in range(300)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records))
    batches = list(jsonl.read_json(path))
    assert [i.value for b in batches for i in b] == records
    per_batch = [sum(len(json.dumps(i.value)) for i in b) for b in batches]
    assert len(batches) >= 8 and max(per_batch) <= BATCH_BYTES + 2 * 65536, per_batch


def test_a_csv_block_is_handed_on_in_batches_of_about_batch_bytes(tmp_path):
    """pyarrow reads a CSV in blocks of 4 MiB: its rows go on in batches bounded like the others',
    not a block at a time (a crew holds several batches in flight)."""
    import csv

    from gamelog.read.tables import read_csv

    texts = [json.loads(line)["text"] for line in open(shared("text/c4_demo.jsonl"), encoding="utf-8")]
    with open(tmp_path / "c4.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    batches = list(read_csv(tmp_path / "c4.csv"))
    assert [i.value["text"] for b in batches for i in b] == texts
    assert [i.location for b in batches for i in b] == [f"row {k}" for k in range(len(texts))]
    sizes = [sum(len(i.value["text"].encode()) for i in b) for b in batches]
    assert len(batches) >= 3 and max(sizes) <= 2 * BATCH_BYTES, sizes


def test_convert_weighs_each_batch_by_its_input_bytes_so_a_crew_holds_few_big_documents(tmp_path):
    """A crew bounds the batches out by their weight (`gamelog.crew`): a batch of lines weighs its
    byte range, a batch of one long document its bytes, in full batches; a table's rows, whose size
    its reader does not give, weigh one batch each."""
    from gamelog.convert import ConvertOptions, Converter
    from gamelog.read import read_items

    weigh = lambda batches: [Converter(ConvertOptions()).weigh((None, None, batch)) for batch in batches]
    lines = Path(shared("chat/gsm8k_chat_train.jsonl"))
    weights = weigh(read_items(str(lines)))
    assert sum(weights) == pytest.approx(lines.stat().st_size / BATCH_BYTES) and max(weights) < 1.1
    wiki = Path(shared("text/wiki_demo.txt"))  # one document of about 1 MB
    ((item,),) = read_items(str(wiki), split="blank-line")
    assert len(item.raw) <= 4 * RAW_LIMIT  # what a reject shows of it, not the megabyte again beside its text
    (document,) = weigh([[item]])
    assert document == pytest.approx(wiki.stat().st_size / BATCH_BYTES, rel=0.01) and document > 3
    array = Path(shared("qa/haystack_squad2_small.json"))  # two big items of a streamed array: the bytes the parser read
    assert weigh(read_items(str(array))) == [pytest.approx(array.stat().st_size / BATCH_BYTES, rel=0.01)]
    table = tmp_path / "qa.csv"
    table.write_text("question,answer\nWhat is 2+2?,4\nWho wrote Hamlet?,Shakespeare\n")
    assert weigh(read_items(str(table))) == [1.0]


def test_a_parquet_input_is_read_a_row_group_at_a_time(tmp_path):
    """Pre-buffering would read all of the file's columns at once (its whole size held, whatever
    the batches); read a row group at a time, the reader holds about one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gamelog.read.tables import read_parquet

    rows = [json.loads(line) for line in Path(shared("chat/gsm8k_chat_train.jsonl")).read_text().splitlines() if line.strip()]
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.Table.from_pylist(rows * 80), path, row_group_size=500)
    assert pq.ParquetFile(path).metadata.num_row_groups >= 20
    size = path.stat().st_size
    assert arrow_held_while(read_parquet(path)) < size / 4
