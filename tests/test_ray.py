"""The Ray engine against the local engine on the real shared data: same episodes, tokens and counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray  # the ray extra is part of make test

from gamelog.convert import ConvertOptions, convert
from gamelog.engines.ray_data import convert_on_ray, pack_on_ray
from gamelog.errors import GamelogError
from gamelog.pack import PackOptions, pack
from gamelog.validate import validate

from conftest import shared

INPUTS = ("chat", "instruct", "preference")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _episodes(out: Path) -> pa.Table:
    table = pa.concat_tables(pq.read_table(f) for f in sorted(out.glob("episodes-*.parquet")))
    return table.sort_by("episode_id")


def _same_report(a, b) -> None:
    assert a.model_dump(exclude={"shards"}) == b.model_dump(exclude={"shards"})
    assert sum(s["rows"] for s in a.shards) == sum(s["rows"] for s in b.shards)


def test_convert_on_ray_writes_the_local_episodes_and_counts(tmp_path):
    inputs = [shared(name) for name in INPUTS]
    local = convert(inputs, out=tmp_path / "local", options=ConvertOptions())
    remote = convert_on_ray(inputs, out=tmp_path / "ray", options=ConvertOptions())
    _same_report(local, remote)
    assert _episodes(tmp_path / "local").equals(_episodes(tmp_path / "ray"))
    assert validate(tmp_path / "ray").valid


def test_duplicates_across_files_are_found_on_ray_as_locally(tmp_path):
    """Each file is a task of its own; repeats of an earlier file's records are dropped by the driver."""
    original = Path(shared("instruct/alpaca_data_cleaned_1000.json"))
    copy = tmp_path / "copy" / original.name
    copy.parent.mkdir()
    shutil.copy(original, copy)
    inputs = [str(original), str(copy)]
    local = convert(inputs, out=tmp_path / "local", options=ConvertOptions())
    remote = convert_on_ray(inputs, out=tmp_path / "ray", options=ConvertOptions())
    _same_report(local, remote)
    assert remote.duplicates_removed >= remote.records_converted  # the whole copy is a repeat
    rejects = pq.read_table(tmp_path / "ray" / "rejects.parquet").to_pylist()
    assert {r["source"] for r in rejects if r["reason"] == "duplicate"} >= {str(copy)}
    assert _episodes(tmp_path / "local").equals(_episodes(tmp_path / "ray"))
    assert validate(tmp_path / "ray").valid


@pytest.mark.parametrize("window", [100_000, 500])
def test_pack_on_ray_packs_the_same_tokens(tmp_path, window):
    episodes = tmp_path / "episodes"
    convert([shared("chat"), shared("instruct")], out=episodes, options=ConvertOptions())
    options = PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=4096, window=window)
    local = pack(episodes, out=tmp_path / "local", options=options)
    remote = pack_on_ray(episodes, out=tmp_path / "ray", options=options)
    assert remote.counts == local.counts  # one window each: the same rows too
    if window > local.counts["episodes_read"]:
        assert [s["sha256"] for s in remote.shards] == [s["sha256"] for s in local.shards]
    assert validate(tmp_path / "ray").valid


def test_pack_on_ray_refuses_the_preference_objective(tmp_path):
    episodes = tmp_path / "episodes"
    convert([shared("preference")], out=episodes, options=ConvertOptions())
    with pytest.raises(GamelogError, match="local engine"):
        pack_on_ray(episodes, out=tmp_path / "ray", options=PackOptions(objective="preference"))


def test_pack_on_ray_reads_episodes_through_a_filesystem_uri(tmp_path):
    """Episodes on an object store are read with pyarrow's filesystems; file:// is the one testable offline."""
    episodes = tmp_path / "episodes"
    convert([shared("chat/glaive_toolcall_en_demo.json")], out=episodes, options=ConvertOptions())
    options = PackOptions(tokenizer=shared("tokenizers/phi-2"), seq_len=2048)
    local = pack(episodes, out=tmp_path / "local", options=options)
    remote = pack_on_ray(episodes.as_uri(), out=tmp_path / "ray", options=options)
    assert [s["sha256"] for s in remote.shards] == [s["sha256"] for s in local.shards]
    with pytest.raises(GamelogError, match="no episodes"):
        pack_on_ray((tmp_path / "ray").as_uri(), out=tmp_path / "none", options=options)
