"""inspect, report and progress: what a person sees, checked on real data."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from rich.console import Console

from gamelog.convert import ConvertOptions, convert
from gamelog.inspect import inspect
from gamelog.pack import PackOptions, pack
from gamelog.report import PLOTS_EPISODES, PLOTS_SHARDS, write_report

from conftest import ROOT, shared

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("see")
    convert([shared("chat/glaive_toolcall_en_demo.json"), shared("preference/harmless-base_test.jsonl.gz")], out=base / "ep", options=ConvertOptions())
    pack(base / "ep", out=base / "sh", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048))
    return base


def _text(panels) -> str:
    console = Console(record=True, width=120, color_system=None)
    for panel in panels:
        console.print(panel)
    return console.export_text()


def test_inspect_episode_shows_players_roles_and_labels(data):
    from gamelog.write.atomic import episode_files
    import pyarrow.parquet as pq

    rows = pq.read_table(episode_files(data / "ep")[0]).to_pylist()
    tool_episode = next(r for r in rows if any(t["role"] == "tool_call" for t in r["turns"]))
    text = _text(inspect(data / "ep", episode=tool_episode["episode_id"]))
    assert tool_episode["episode_id"] in text
    assert "P2 tool_call" in text and "P1 tool" in text and "[optimal]" in text
    assert tool_episode["turns"][0]["content"][:40] in text


def test_inspect_packed_rows_mark_segments(data):
    text = _text(inspect(data / "sh", sample=1, seed=1))
    assert re.search(r"row \d+: \d+ tokens, \d+ segments, \d+ trained", text)
    assert "┃" in text and "<|assistant|>" in text


def test_inspect_filters(data):
    assert len(inspect(data / "ep", regime="preference", sample=4, seed=2)) == 4
    assert all("preference" in _text([p]) for p in inspect(data / "ep", regime="preference", sample=2, seed=3))


def test_cli_inspect_runs(data):
    done = subprocess.run([sys.executable, "-m", "gamelog.cli", "inspect", str(data / "ep"), "--sample", "2"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "2 shown" in done.stdout


def test_report_renders_in_a_real_browser(data, tmp_path):
    page = write_report(data / "ep", out=tmp_path / "report.html", shards=data / "sh")
    html = page.read_text(encoding="utf-8")
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing fetched at view time
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is needed (make test installs it)"
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    for plot in PLOTS_EPISODES + PLOTS_SHARDS:
        assert f'id="{plot}"' in dom.stdout, plot
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,2200", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
    from PIL import Image

    image = Image.open(shot)
    assert image.size == (1400, 2200) and len(image.convert("L").resize((70, 110)).getcolors()) > 10  # not a blank page


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import gamelog.progress as p; p.PLAIN_EVERY = 0\nwith p.progress('convert', unit='records', total=10) as u:\n    u(done=5, extra='x')"], capture_output=True, text=True)
    assert re.search(r"convert: 5/10 records, [\d,]+/s, x, about", done.stderr)


def test_report_reads_in_parts_and_draws_the_same_page(data, tmp_path, monkeypatch):
    """The report reads episodes and rows REPORT_BATCH at a time (memory does not grow with the
    dataset: it held every move's encoding before); the page is the same however they are cut."""
    from gamelog import report

    monkeypatch.setattr(report, "REPORT_BATCH", 1 << 30)
    whole = write_report(data / "ep", out=tmp_path / "whole.html", shards=data / "sh").read_text()
    monkeypatch.setattr(report, "REPORT_BATCH", 7)
    assert write_report(data / "ep", out=tmp_path / "parts.html", shards=data / "sh").read_text() == whole


def test_inspect_reads_the_picked_rows_across_files_and_row_groups(data, tmp_path):
    """inspect reads what selects (ids, regimes) of every file, then only the row groups that hold
    the picked rows: the rows are the ones the ids and the seeded sample name, wherever they are."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gamelog.write.atomic import episode_files

    table = pa.concat_tables(pq.read_table(f) for f in episode_files(data / "ep"))
    half = table.num_rows // 2
    folder = tmp_path / "ep"
    folder.mkdir()
    pq.write_table(table.slice(0, half), folder / "episodes-00000.parquet", row_group_size=50)
    pq.write_table(table.slice(half), folder / "episodes-00001.parquet", row_group_size=50)
    ids = table.column("episode_id").to_pylist()
    for k in (0, 77, half, table.num_rows - 1):
        text = _text(inspect(folder, episode=ids[k]))
        assert ids[k] in text
    sampled = inspect(folder, sample=5, seed=4)
    expected = [ids[i] for i in random.Random(4).sample(range(table.num_rows), 5)]
    assert all(episode_id in _text([panel]) for episode_id, panel in zip(expected, sampled, strict=True))


def test_a_damaged_episodes_file_stops_inspect_and_report_with_its_name(tmp_path):
    from gamelog.errors import GamelogError

    folder = tmp_path / "ep"
    folder.mkdir()
    (folder / "episodes-00000.parquet").write_bytes(b"PAR1 not parquet at all PAR1")
    for show in (lambda: inspect(folder), lambda: write_report(folder, out=tmp_path / "r.html")):
        with pytest.raises(GamelogError, match="episodes-00000.parquet: not readable"):
            show()
