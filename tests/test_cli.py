"""The CLI end to end, as a user runs it: convert, validate, schemas, formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gamelog.records import json_schemas

from conftest import ROOT, shared

GAMELOG = [sys.executable, "-m", "gamelog.cli"]


def _gamelog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GAMELOG, *args], capture_output=True, text=True, cwd=ROOT)


def test_convert_then_validate(tmp_path):
    out = tmp_path / "glaive"
    done = _gamelog("convert", shared("chat/glaive_toolcall_en_demo.json"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "records read" in done.stdout and "sharegpt" in done.stdout
    report = json.loads((out / "report.json").read_text())
    printed = dict(line.rsplit(None, 1) for line in done.stdout.splitlines()[3:] if line.strip())  # plain lines in a pipe: label, value
    assert printed["records read"] == f"{report['records_read']:,}" and printed["episodes written"] == f"{report['episodes_written']:,}"
    assert report["records_read"] == report["records_converted"] + report["records_rejected"] == 300
    assert _gamelog("validate", str(out)).returncode == 0


def test_convert_with_format_override_and_recipe(tmp_path):
    done = _gamelog("convert", shared("preference/harmless-base_test.jsonl.gz"), "--format", "hh-rlhf", "--recipe", "pipelines/hh-rlhf-harmless.toml", "--out", str(tmp_path / "hh"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "hh" / "report.json").read_text())["settings"]["recipe"] == "hh-rlhf-harmless"


def test_nothing_convertible_exits_1(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"foo": 1}\n')
    done = _gamelog("convert", str(path), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "rejects.parquet" in done.stderr


def test_schemas_write_and_check(tmp_path):
    assert _gamelog("schemas", "--out", str(tmp_path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(json_schemas())
    assert _gamelog("schemas", "--out", str(tmp_path), "--check").returncode == 0
    (tmp_path / "episode.schema.json").write_text("{}")
    stale = _gamelog("schemas", "--out", str(tmp_path), "--check")
    assert stale.returncode == 1 and "episode.schema.json" in stale.stdout


def test_formats_lists_every_converter():
    from gamelog.formats import FORMATS

    listed = _gamelog("formats").stdout
    assert all(name in listed for name in FORMATS)


def test_summaries_in_a_pipe_are_plain_lines_without_rich(tmp_path):
    """rich (0.05 s of import) is for terminals; a summary written to a pipe is aligned text."""
    code = "import sys, types; from gamelog.summary import print_pack_summary; " "m = types.SimpleNamespace(template='plain', objective='sft', counts={'rows': 3, 'tokens_total': 1200, 'episodes_dropped': 0}, rejected_by_reason={'too_long': 2}, efficiency=0.5); " "print_pack_summary(m, 'out'); print('rich' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gamelog pack -> out") and lines[-1] == "False"
    assert [line.split() for line in lines[1:-1]] == [["rows", "3"], ["tokens", "total", "1,200"], ["rejected:", "too_long", "2"], ["efficiency", "50.00%"]]
    assert len({len(line) for line in lines[1:-1]}) == 1  # values right-aligned in one column


def test_pack_allocates_arrow_memory_from_the_heap_it_trims(tmp_path):
    """`gamelog pack` runs Arrow on glibc's heap (trimmed after each window), not on its mimalloc
    pool; convert keeps Arrow's default. The pool is chosen when pyarrow loads, so each command
    runs in a fresh interpreter here, and says which pool Arrow used."""
    code = "import sys; from typer.testing import CliRunner; from gamelog.cli import app; done = CliRunner().invoke(app, sys.argv[1:]); import pyarrow as pa; print(done.exit_code, pa.default_memory_pool().backend_name)"
    unset = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    run = lambda *args: subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=unset)
    default = subprocess.run([sys.executable, "-c", "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"], capture_output=True, text=True, env=unset).stdout.strip()
    converted = run("convert", shared("chat"), "--out", str(tmp_path / "episodes"))
    packed = run("pack", str(tmp_path / "episodes"), "--tokenizer", "builtin", "--seq-len", "512", "--out", str(tmp_path / "shards"))
    assert converted.stdout.split()[-2:] == ["0", default], converted.stdout + converted.stderr
    assert packed.stdout.split()[-2:] == ["0", "system"], packed.stdout + packed.stderr
