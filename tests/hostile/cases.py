"""Hostile inputs for `gamelog convert`, generated (never hand-typed blobs), each with its exact outcome.

    python tests/hostile/cases.py OUT_DIR     # write every case's input files under OUT_DIR/NAME/
    python tests/hostile/cases.py --doc       # run every case and print docs/robustness.md

Each case names what it breaks, writes its inputs, and states the outcome the converter must
give: how many records convert, and which are rejected with which reason at which location.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
GOOD_CHAT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
GOOD_MESSAGES = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
GOOD_ALPACA = {"instruction": "Say hi.", "input": "", "output": "Hi!"}


@dataclass
class Case:
    name: str
    breaks: str
    write: Callable[[Path], Path]  # writes the input under a folder, returns what to convert
    converted: int
    rejects: dict[str, str] = field(default_factory=dict)  # location -> reason
    options: dict = field(default_factory=dict)
    behaviour: str = ""


def jsonl(*records, name="data.jsonl") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in records))
        return path

    return write


def raw(data: bytes, name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def chat(*values, key="value", role="from") -> dict:
    roles = ["human", "gpt"]
    return {"conversations": [{role: roles[i % 2], key: v} for i, v in enumerate(values)]}


def nested_oasst(depth: int) -> bytes:
    """A chain of `depth` messages, written as text (JSON encoders refuse such depth)."""
    opened = "".join(
        f'{{"message_id": "m{level}", "role": "{"assistant" if level % 2 else "prompter"}", "text": "move {level}", "rank": 0, "replies": ['
        for level in range(depth)
    )
    return ('{"message_tree_id": "deep", "prompt": ' + opened + "]}" * depth + "}\n").encode()


def write_parquet(rows: list[dict], name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), folder / name)
        return folder / name

    return write


def mixed_directory(folder: Path) -> Path:
    sub = folder / "mixed"
    sub.mkdir()
    (sub / "a.jsonl").write_text(json.dumps(GOOD_CHAT) + "\n")
    (sub / "b.json").write_text(json.dumps([GOOD_ALPACA]))
    (sub / "c.txt").write_text("Plain prose.\n\nMore prose.\n")
    (sub / "d.jsonl.gz").write_bytes(gzip.compress(json.dumps({"question": "2+2?", "answer": "4"}).encode() + b"\n"))
    (sub / "notes.md").write_text("# not data\n")
    return sub


def gzip_cut(folder: Path) -> Path:
    data = gzip.compress(b"".join(json.dumps({"text": f"document {i} " * 20}).encode() + b"\n" for i in range(400)))
    path = folder / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def bomb(kind: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        chunk = b"a" * (1 << 20)
        if kind == "gz":
            path = folder / "bomb.jsonl.gz"
            with gzip.open(path, "wb", compresslevel=9) as handle:
                for _ in range(64):
                    handle.write(chunk)
        else:
            path = folder / "bomb.jsonl.zst"
            with open(path, "wb") as handle, zstandard.ZstdCompressor(level=19).stream_writer(handle) as writer:
                for _ in range(64):
                    writer.write(chunk)
        return path

    return write


def cases() -> list[Case]:
    huge = {"text": "x" * (50 << 20)}
    return [
        Case("truncated_json_line", "a JSON line cut off mid-record", jsonl(GOOD_CHAT, b'{"conversations": [{"from": "hu\n', chat("Hi", "Hey there")), 2, {"line 2": "bad_json"}),
        Case("json_array_cut_in_middle", "a JSON array that ends mid-item", raw(json.dumps([GOOD_ALPACA | {"output": f"Hi {i}!"} for i in range(10)]).encode()[:-40], "cut.json"), 9, {"item 9": "bad_json"}),
        Case("trailing_garbage_after_array", "bytes after a complete JSON array", raw(json.dumps([GOOD_ALPACA, GOOD_ALPACA | {"output": "Yo"}]).encode() + b" }{ garbage", "trailing.json"), 2, {"item 2": "bad_json"}),
        Case("trailing_garbage_after_line", "bytes after a complete JSON line", jsonl(GOOD_CHAT, b'{"text": "a"} trailing\n'), 1, {"line 2": "bad_json"}),
        Case("conversations_not_a_list", "wrong type: conversations is a string", jsonl(GOOD_CHAT, {"conversations": "Hi"}), 1, {"line 2": "wrong_type"}),
        Case("messages_a_number", "wrong type: messages is a number", jsonl(GOOD_MESSAGES, {"messages": 7}), 1, {"line 2": "wrong_type"}),
        Case("content_a_number", "wrong type: a message's content is a number", jsonl(GOOD_MESSAGES, {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}), 1, {"line 2": "wrong_type"}),
        Case("instruction_a_list", "wrong type: instruction is a list", jsonl(GOOD_ALPACA, {"instruction": ["a"], "output": "b"}), 1, {"line 2": "wrong_type"}),
        Case("label_a_string", "wrong type: a KTO label is a string", jsonl(GOOD_MESSAGES | {"label": True}, GOOD_MESSAGES | {"label": "yes"}), 1, {"line 2": "wrong_type"}),
        Case("rating_a_string", "wrong type: a rating is text", jsonl({"prompt": "p", "completions": [{"response": "a", "rating": 1}, {"response": "b", "rating": "high"}]}), 0, {"line 1": "bad_value"}),
        Case("null_everywhere", "null for every field", jsonl(GOOD_CHAT, {"conversations": None, "system": None}), 1, {"line 2": "missing_field"}),
        Case("null_message_content", "a message whose content is null", jsonl(GOOD_MESSAGES, {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]}), 1, {"line 2": "empty_content"}),
        Case("missing_output", "missing required key: output", jsonl(GOOD_ALPACA, {"instruction": "Say hi.", "input": "", "id": 1}, {"instruction": "x", "output": "y"}), 2, {"line 2": "missing_field"}, {"format": "alpaca"}),
        Case("missing_role_key", "a message without its role key", jsonl(GOOD_CHAT, {"conversations": [{"value": "Hi"}, {"from": "gpt", "value": "Yo"}]}), 1, {"line 2": "missing_field"}),
        Case("extra_unknown_keys", "unknown keys beside the known ones", jsonl(GOOD_CHAT | {"foo": 1, "bar": {"baz": [1]}}), 1, {}, behaviour="converted; unknown keys are ignored"),
        Case("empty_strings", "empty output and empty instruction", jsonl(GOOD_ALPACA, {"instruction": "", "input": "", "output": "x"}, {"instruction": "x", "input": "", "output": ""}), 1, {"line 2": "empty_content", "line 3": "empty_content"}),
        Case("empty_conversation", "a conversation with no messages", jsonl(GOOD_CHAT, {"conversations": []}), 1, {"line 2": "empty_conversation"}),
        Case("only_player1_moves", "a conversation of only user moves", jsonl(GOOD_CHAT, chat("Hi", key="value") | {"conversations": [{"from": "human", "value": "Hi"}, {"from": "human", "value": "Anyone?"}]}), 1, {"line 2": "no_player2_move"}),
        Case("unknown_role", "a role name no format knows", jsonl(GOOD_CHAT, {"conversations": [{"from": "narrator", "value": "Once"}, {"from": "gpt", "value": "x"}]}), 1, {"line 2": "unknown_role"}),
        Case("role_odd_case_and_spaces", "role names like ' GPT ' and 'Human'", jsonl({"conversations": [{"from": "Human", "value": "Hi"}, {"from": " GPT ", "value": "Hello"}]}), 1, {}, behaviour="converted; roles are matched trimmed and case-blind"),
        Case("invalid_utf8", "bytes that are not UTF-8 in a JSON line", jsonl(GOOD_CHAT, b'{"conversations": [{"from": "human", "value": "caf\xe9"}]}\n'), 1, {"line 2": "bad_utf8"}),
        Case("windows1252_crlf_text", "a Windows-1252 text file with CRLF line ends", raw("First paragraph.\r\n\r\nCaf\u00e9 au lait.\r\n".encode("cp1252"), "win.txt"), 1, {"line 3": "bad_utf8"}, behaviour="the UTF-8 paragraph converts (CRLF normalised); the cp1252 one is rejected with a hint to re-encode"),
        Case("bom_jsonl", "a UTF-8 byte-order mark before the first line", raw(b"\xef\xbb\xbf" + json.dumps(GOOD_CHAT).encode() + b"\n", "bom.jsonl"), 1),
        Case("bom_json_array", "a byte-order mark before a JSON array", raw(b"\xef\xbb\xbf" + json.dumps([GOOD_ALPACA]).encode(), "bom.json"), 1),
        Case("raw_nul_byte", "a raw NUL byte inside a JSON line", jsonl(GOOD_CHAT, b'{"text": "a\x00b"}\n'), 1, {"line 2": "bad_json"}),
        Case("escaped_nul_in_content", "an escaped \\u0000 inside content", jsonl({"text": "before\u0000after"}), 1, {}, behaviour="converted: valid JSON and valid Unicode, kept as given"),
        Case("single_line_50mb", "one 50 MB record on one line", jsonl(huge, {"text": "small"}), 2, {}, behaviour="converted under the default 64 MiB record limit"),
        Case("record_over_limit", "a record over --max-record-bytes", jsonl({"text": "x" * 200_000}, {"text": "small"}), 1, {"line 1": "record_too_large"}, {"max_record_bytes": 100_000}),
        Case("turns_100k", "100,000 turns in one conversation", jsonl(chat(*(f"move {i}" for i in range(100_000)))), 1, {}, behaviour="converted in one episode"),
        Case("deep_oasst_tree", "an OpenAssistant tree 600 messages deep", jsonl(nested_oasst(500)), 1, {}, behaviour="converted: the tree is walked without recursion"),
        Case("oasst_tree_too_deep_to_parse", "an OpenAssistant tree 600 messages deep (1,200 levels of JSON)", jsonl(GOOD_CHAT, nested_oasst(600)), 1, {"line 2": "bad_json"}, behaviour="rejected: deeper than the JSON parser's limit of 1,024 levels"),
        Case("too_deep_json", "JSON nested deeper than the parser allows", jsonl(GOOD_CHAT, b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}\n"), 1, {"line 2": "bad_json"}),
        Case("oasst_reply_cycle", "a reply whose id repeats an ancestor's", jsonl({"message_tree_id": "t", "prompt": {"message_id": "a", "role": "prompter", "text": "Hi", "replies": [{"message_id": "b", "role": "assistant", "text": "Yo", "rank": 0, "replies": [{"message_id": "a", "role": "prompter", "text": "Hi again", "replies": []}]}]}}), 0, {"line 1": "reply_cycle"}),
        Case("nan_literal_rating", "NaN as a JSON literal", jsonl(b'{"prompt": "p", "completions": [{"response": "a", "rating": NaN}]}\n', {"prompt": "p", "completions": [{"response": "a", "rating": 2}, {"response": "b", "rating": 1}]}), 1, {"line 1": "bad_json"}),
        Case("infinite_number", "a number too large for a double (1e400)", jsonl(b'{"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1e400}\n', {"prompt": "p", "chosen": "a", "rejected": "b"}), 1, {"line 1": "bad_json"}),
        Case("infinite_margin_string", "a margin given as the string 'inf'", jsonl({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "inf"}), 0, {"line 1": "bad_value"}),
        Case("duplicate_ids", "two records with the same id but different content", jsonl(GOOD_CHAT | {"id": "x"}, chat("Hi", "Other") | {"id": "x"}), 2, {}, behaviour="both converted: episode ids derive from the location, not the source id"),
        Case("duplicate_records", "the same record twice", jsonl(GOOD_CHAT, GOOD_CHAT), 1, {"line 2": "duplicate"}),
        Case("gzip_cut_short", "a .gz file that ends mid-stream", gzip_cut, None, {"truncated": "truncated_file"}),
        Case("gzip_bomb", "64 MB of one unbroken line from a 64 KB .gz", bomb("gz"), 0, {"line 1": "record_too_large"}, {"max_record_bytes": 1 << 20}, "stopped at the record limit: the line is skipped in 1 MB chunks, never held"),
        Case("zstd_bomb", "64 MB of one unbroken line from a tiny .zst", bomb("zst"), 0, {"line 1": "record_too_large"}, {"max_record_bytes": 1 << 20}, "stopped at the record limit, as for gzip"),
        Case("parquet_wrong_schema", "a Parquet file whose columns fit no format", write_parquet([{"foo": 1, "bar": "x"}, {"foo": 2, "bar": "y"}], "odd.parquet"), 0, {"row 0": "unknown_format", "row 1": "unknown_format"}),
        Case("parquet_damaged", "bytes that are not Parquet in a .parquet file", raw(b"PAR1 this is not a parquet file", "bad.parquet"), 0, {"row 0": "unreadable_file"}),
        Case("empty_file", "a file of zero bytes", raw(b"", "empty.jsonl"), 0),
        Case("empty_json_array", "an empty JSON array", raw(b"[]", "empty.json"), 0),
        Case("only_blank_lines", "a JSONL file of blank lines", raw(b"\n\n  \n", "blank.jsonl"), 0),
        Case("top_level_scalar", "a JSON document that is a number", raw(b"42", "scalar.json"), 0, {"item 0": "not_an_object"}),
        Case("array_of_non_objects", "an array of numbers, strings and nulls", raw(json.dumps([GOOD_ALPACA, 1, "a", None]).encode(), "mixed.json"), 1, {"item 1": "not_an_object", "item 2": "not_an_object", "item 3": "not_an_object"}),
        Case("malformed_tool_calls", "tool_calls that are not a list", jsonl(GOOD_MESSAGES, {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": "call it"}]}), 1, {"line 2": "wrong_type"}),
        Case("unsupported_content_part", "an image part in typed content", jsonl(GOOD_MESSAGES, {"messages": [{"role": "user", "content": [{"type": "image", "image": "x.png"}]}, {"role": "assistant", "content": "x"}]}), 1, {"line 2": "unsupported_content"}),
        Case("transcript_without_human", "an HH transcript that starts mid-text", jsonl({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}, {"chosen": "oops\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}), 1, {"line 2": "bad_transcript"}),
        Case("identical_pair", "chosen equal to rejected", jsonl({"prompt": "p", "chosen": "a", "rejected": "a"}, {"prompt": "p", "chosen": "a", "rejected": "b"}), 1, {"line 1": "identical_pair"}),
        Case("stepwise_length_mismatch", "more step labels than steps", jsonl({"prompt": "p", "completions": ["a"], "labels": [True, False]}, {"prompt": "p", "completions": ["a"], "labels": [True]}), 1, {"line 1": "bad_value"}),
        Case("squad_paragraph_without_qas", "a SQuAD paragraph whose qas is missing", raw(json.dumps({"version": "v2", "data": [{"title": "T", "paragraphs": [{"context": "c"}, {"context": "Paris is in France.", "qas": [{"id": "q", "question": "Where is Paris?", "answers": [{"text": "France"}]}]}]}]}).encode(), "squad.json"), 1, {"data[0].paragraphs[0]": "missing_field"}, {"format": "squad"}),
        Case("csv_ragged_row", "a CSV row with too many fields", raw(b"text\nfirst doc\n\"second, quoted\"\nthird,extra,fields\n", "rows.csv"), 2, {"after row 0": "bad_csv"}, behaviour="2 converted; the ragged row rejected as `bad_csv` with its text (quoted values may span lines, so the location is the block it was found in)"),
        Case("csv_bytes_not_utf8", "bytes that are not UTF-8 in a CSV row, and in a ragged row", raw(b"text\nfirst doc\n\xff\xfe second\nthird doc\nfourth,\xff extra\nfifth doc\n", "latin.csv"), 3, {"row 1": "bad_utf8", "after row 0": "bad_csv"}, behaviour="3 converted; the row rejected as `bad_utf8` naming its field, the ragged one as `bad_csv`, the rows after them kept (pyarrow alone stops the file there)"),
        Case("csv_column_of_numbers", "a CSV column of numbers only, one with a leading zero", raw(b"question,answer\nHow many?,72\nThe agent?,007\n", "numbers.csv"), 2, {}, behaviour="2 converted; each answer is its text (`007`), not a number"),
        Case("directory_mixed_formats", "a directory of different formats and a stray file", mixed_directory, 5, {}, behaviour="each file detected on its own; the .md file is not read"),
    ]


def run_case(case: Case, folder: Path) -> dict:
    """Convert one case; returns the facts its test and the doc check."""
    from gamelog.convert import ConvertOptions, convert

    folder.mkdir(parents=True, exist_ok=True)
    target = case.write(folder)
    started = time.perf_counter()
    report = convert([str(target)], out=folder / "out", options=ConvertOptions(**case.options))
    seconds = time.perf_counter() - started
    rejects = []
    if (folder / "out" / "rejects.parquet").exists():
        import pyarrow.parquet as pq

        rejects = pq.read_table(folder / "out" / "rejects.parquet").to_pylist()
    return {"report": report, "rejects": rejects, "seconds": seconds, "out": folder / "out"}


def document(root: Path) -> str:
    """docs/robustness.md: the cases, what each gets, and the totals of a run of all of them."""
    from gamelog.validate import validate

    rows, totals = [], {"cases": 0, "read": 0, "converted": 0, "rejected": 0, "lost": 0, "crashes": 0}
    for case in cases():
        try:
            facts = run_case(case, root / case.name)
        except Exception as exc:  # counted: the doc must show a crash if there is one
            totals["crashes"] += 1
            rows.append(f"| `{case.name}` | {case.breaks} | CRASH: {exc.__class__.__name__} |")
            continue
        report = facts["report"]
        totals["cases"] += 1
        totals["read"] += report.records_read
        totals["converted"] += report.records_converted
        totals["rejected"] += report.records_rejected
        totals["lost"] += report.records_read - report.records_converted - report.records_rejected
        if report.episodes_written and not validate(facts["out"]).valid:
            totals["crashes"] += 1
        reasons = ", ".join(f"`{r}`" for r in sorted(set(case.rejects.values()))) or "none"
        outcome = case.behaviour or f"{report.records_converted} converted; rejected: {reasons}"
        rows.append(f"| `{case.name}` | {case.breaks} | {outcome} |")
    header = [
        "# Robustness",
        "",
        "gamelog treats bad input as data: a record that cannot be converted becomes a reject with a",
        "reason code and its location, and never takes good records down with it. The cases below are",
        "generated by `tests/hostile/cases.py` and checked, each with its exact outcome, by",
        "`tests/hostile/test_hostile.py`. This page is written by `python tests/hostile/cases.py --doc`.",
        "",
        "## Figures (a run of every case)",
        "",
        "| cases | records in | converted | rejected | lost | crashes |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {totals['cases']} | {totals['read']} | {totals['converted']} | {totals['rejected']} | {totals['lost']} | {totals['crashes']} |",
        "",
        "## Cases",
        "",
        "| case | what it breaks | behaviour |",
        "| --- | --- | --- |",
    ]
    footer = [
        "",
        "## Beyond single records",
        "",
        "- **Limits.** `--max-record-bytes` (default 64 MiB) bounds one record: a longer line is skipped",
        "  in 1 MB chunks without being held, and rejected as `record_too_large`; this also stops",
        "  gzip and zstd bombs that expand to one endless line. Readers hold one batch (at most 1,024",
        "  records or 256 KiB of raw text) at a time.",
        "- **Crash safety.** Output is written under temporary names (`.NAME.tmp-PID`) and renamed when",
        "  the run succeeds; a killed run leaves no partial file under a final name, and the next run",
        "  removes its temporaries and writes the same bytes (tested with SIGKILL at 20+ random points",
        "  for `convert` and for `pack`). A full disk or a failed write ends with one clear error and",
        "  no published shard.",
        "- **Integrity.** `report.json` and `manifest.json` list each shard's rows and sha256;",
        "  `gamelog validate` names a flipped byte, a truncated or missing shard, and counts that",
        "  disagree.",
        "- **Untrusted files.** Chat templates run in Jinja's immutable sandbox: attribute walks such",
        "  as `__class__`/`__mro__` are refused with a clear error. No input is unpickled or evaluated;",
        "  JSON, CSV, Parquet and Arrow are parsed as data.",
        "",
    ]
    return "\n".join(header + rows + footer)


def main() -> None:
    import tempfile

    if sys.argv[1:] == ["--doc"]:
        with tempfile.TemporaryDirectory() as tmp:
            print(document(Path(tmp)))
        return
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for case in cases():
        folder = Path(sys.argv[1]) / case.name
        folder.mkdir(parents=True, exist_ok=True)
        print(case.write(folder))


if __name__ == "__main__":
    main()
