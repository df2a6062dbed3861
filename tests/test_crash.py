"""Crash safety: SIGKILL at random points never leaves a partial file under a final name; a re-run
finishes the job with byte-identical output; a full disk ends with a clear error and no shard."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, shared

GAMELOG = [sys.executable, "-m", "gamelog.cli"]
KILLS_PER_COMMAND = 12


def _final_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")} if out.exists() else {}


def _assert_complete(out: Path) -> None:
    """Every file under a final name is whole: Parquet reads to the end, JSON parses."""
    for name in _final_files(out):
        if name.endswith(".parquet"):
            pq.read_table(out / name)
        else:
            json.loads((out / name).read_text())


def _run_and_kill(command: list[str], delay: float) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def _kill_and_resume(command, out: Path, reference: dict[str, bytes], seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(KILLS_PER_COMMAND):
        shutil.rmtree(out, ignore_errors=True)
        _run_and_kill(command, rng.uniform(0.2, seconds))
        _assert_complete(out)
        assert subprocess.run(command, capture_output=True, cwd=ROOT).returncode == 0
        assert _final_files(out) == reference
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for relative in ("chat/glaive_toolcall_en_demo.json", "instruct/alpaca_data_cleaned_1000.json", "preference/harmless-base_test.jsonl.gz", "qa/NQ-open.dev.jsonl"):
        shutil.copy(shared(relative), folder)
    return folder


def _timed(command) -> float:
    started = time.perf_counter()
    assert subprocess.run(command, capture_output=True, cwd=ROOT).returncode == 0
    return time.perf_counter() - started


def test_convert_killed_anywhere_resumes_byte_identical(inputs, tmp_path):
    out = tmp_path / "episodes"
    command = [*GAMELOG, "convert", str(inputs), "--out", str(out), "--shard-rows", "2000"]
    seconds = _timed(command)
    reference = _final_files(out)
    assert len([n for n in reference if n.startswith("episodes-")]) > 3
    _kill_and_resume(command, out, reference, seconds, seed=1)


def test_pack_killed_anywhere_resumes_byte_identical(inputs, tmp_path):
    episodes = tmp_path / "episodes"
    source = [str(inputs / "glaive_toolcall_en_demo.json"), str(inputs / "alpaca_data_cleaned_1000.json")]
    assert subprocess.run([*GAMELOG, "convert", *source, "--out", str(episodes)], capture_output=True, cwd=ROOT).returncode == 0
    out = tmp_path / "shards"
    command = [*GAMELOG, "pack", str(episodes), "--tokenizer", shared("tokenizers/phi-2"), "--seq-len", "1024", "--shard-rows", "40", "--window", "400", "--out", str(out)]
    seconds = _timed(command)
    reference = _final_files(out)
    assert len([n for n in reference if n.startswith("part-")]) > 3
    _kill_and_resume(command, out, reference, seconds, seed=2)


def _small_filesystem(path: Path) -> bool:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_disk_full_is_a_clear_error_without_partial_shards(inputs, tmp_path):
    disk = tmp_path / "disk"
    if _small_filesystem(disk):
        try:
            done = subprocess.run([*GAMELOG, "convert", str(inputs), "--out", str(disk / "out")], capture_output=True, text=True, cwd=ROOT)
            left = _final_files(disk / "out")
            hidden = [p.name for p in (disk / "out").iterdir()] if (disk / "out").exists() else []
        finally:
            subprocess.run(["umount", str(disk)])
    else:  # no tmpfs here: a file-size limit makes the kernel refuse the write (EFBIG) instead
        script = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); from gamelog.cli import main; main()"
        done = subprocess.run([sys.executable, "-c", script, "convert", str(inputs), "--out", str(disk / "out")], capture_output=True, text=True, cwd=ROOT)
        left = _final_files(disk / "out")
        hidden = [p.name for p in (disk / "out").iterdir()]
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error:") and "cannot write the output" in done.stderr and "Traceback" not in done.stderr
    assert left == {} and hidden == [], (left.keys(), hidden)


def _workers_of(pid: int) -> list[int]:
    """The pack worker processes of `pid`: its children (forked, or spawned), less multiprocessing's resource tracker."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(k) for k in found if "resource_tracker" not in Path(f"/proc/{k}/cmdline").read_text(errors="replace")] if found else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def pack_command(inputs, tmp_path) -> tuple[list[str], Path]:
    episodes = tmp_path / "episodes"
    source = [str(inputs / "glaive_toolcall_en_demo.json"), str(inputs / "alpaca_data_cleaned_1000.json")]
    assert subprocess.run([*GAMELOG, "convert", *source, "--out", str(episodes)], capture_output=True, cwd=ROOT).returncode == 0
    out = tmp_path / "shards"
    return [*GAMELOG, "pack", str(episodes), "--tokenizer", shared("tokenizers/phi-3-mini"), "--workers", "2", "--out", str(out)], out


def _start_with_workers(command: list[str]) -> tuple[subprocess.Popen, list[int]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 20
    while not (workers := _workers_of(process.pid)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert workers, "pack started no worker process"
    return process, workers


def test_a_killed_pack_leaves_no_worker_behind(pack_command):
    process, workers = _start_with_workers(pack_command[0])
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived the killed pack"


def test_a_dead_worker_is_a_clear_error_and_nothing_is_published(pack_command):
    command, out = pack_command
    process, workers = _start_with_workers(command)
    os.kill(workers[0], signal.SIGKILL)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("pack hung after one of its workers died")
    assert process.returncode == 2 and "worker process died" in stderr and "Traceback" not in stderr, stderr
    assert _final_files(out) == {}
