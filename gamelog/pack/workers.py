"""The per-batch stage of pack, run in worker processes or in process.

A batch is an Arrow record batch of at most ENCODE_BATCH episodes. The stage renders, encodes,
masks, verifies and fits it (everything per episode); the main process only reads batches, bins
the segments of a window and writes rows. Batches are cut the same way whatever the worker count
and their results are taken in input order, so the output is byte-identical for any --workers.

Each worker runs its tokenizer on one thread (TOKENIZERS_PARALLELISM=false): the cores are shared
out as processes, which also run the Python work in parallel. `--workers 1` runs the stage in the
main process, on one thread too, so that 1 and N workers compare like for like.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gamelog.errors import GamelogError
from gamelog.pack.offsets import Encoder
from gamelog.pack.segments import PackCounts, encode_episodes, fit
from gamelog.pack.tokens import LossPolicy, Segment

NO_TURNS = np.zeros(0, np.int32)
READY = "ready"  # a worker's first message: its tokenizer and renderer are loaded
OPTIONAL = ("reward", "returns", "weight")  # per-token columns a segment may lack
PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent dies


@dataclass(frozen=True)
class Stage:
    """What a worker needs to turn a batch of episodes into fitted segments (picklable)."""

    tokenizer: str
    template: str
    objective: str
    policy: LossPolicy
    gamma: float | None
    seq_len: int
    overflow: str


@dataclass
class Encoded:
    """One batch's result: its segments in episode order, its rejects, and its counts.

    Between processes the segments travel as a few flat arrays, not as thousands of small ones
    (pickling each segment's arrays cost more than the rest of the transfer); the receiving side
    gets its segments back as views into those arrays.
    """

    segments: list[Segment]
    rejects: list[dict]
    counts: PackCounts = field(default_factory=PackCounts)

    def __getstate__(self) -> dict:
        segments = self.segments
        flat = {"ids": [], "mask": [], "player": [], "reward": [], "returns": [], "weight": []}
        present = {name: np.zeros(len(segments), dtype=bool) for name in OPTIONAL}
        for k, segment in enumerate(segments):
            for name in ("ids", "mask", "player"):
                flat[name].append(getattr(segment, name))
            for name in OPTIONAL:
                values = getattr(segment, name)
                if values is not None:
                    present[name][k] = True
                    flat[name].append(values)
        joined = {name: np.concatenate(parts) if parts else None for name, parts in flat.items()}
        lengths = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
        episode_ids = [s.episode_id for s in segments]
        return {"rejects": self.rejects, "counts": self.counts, "lengths": lengths, "episode_ids": episode_ids, "present": present, "flat": joined}

    def __setstate__(self, state: dict) -> None:
        self.rejects, self.counts = state["rejects"], state["counts"]
        lengths, flat, present = state["lengths"], state["flat"], state["present"]
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        # optional columns hold only the segments that have them: their own running offsets
        cursor = {name: np.concatenate([[0], np.cumsum(np.where(present[name], lengths, 0))]).tolist() for name in OPTIONAL}
        segments = []
        for k, episode_id in enumerate(state["episode_ids"]):
            a, b = bounds[k], bounds[k + 1]
            extra = {name: flat[name][cursor[name][k] : cursor[name][k + 1]] if present[name][k] else None for name in OPTIONAL}
            segments.append(Segment(episode_id, flat["ids"][a:b], flat["mask"][a:b], flat["player"][a:b], extra["reward"], extra["returns"], NO_TURNS, extra["weight"]))
        self.segments = segments


_loaded: dict[Stage, tuple] = {}


def _tools(stage: Stage):
    """Tokenizer and renderer of a stage, loaded once per process."""
    if stage not in _loaded:
        from gamelog.pack import make_renderer
        from gamelog.pack.tokenizer import load_tokenizer

        tok = load_tokenizer(stage.tokenizer)
        _loaded[stage] = (Encoder(tok.tokenizer), make_renderer(tok, stage.template, stage.objective))
    return _loaded[stage]


def run_stage(stage: Stage, batch: pa.RecordBatch) -> Encoded:
    encoder, render = _tools(stage)
    episodes = batch.to_pylist()
    if stage.objective == "pretrain":
        episodes = [e | {"regime": "pretrain"} for e in episodes]
    result = Encoded(segments=[], rejects=[])
    counts = result.counts
    counts.episodes_read = len(episodes)
    segments = encode_episodes(episodes, render=render, encoder=encoder, policy=stage.policy, gamma=stage.gamma, counts=counts, rejects=result.rejects)
    encoded, dropped = len(segments), counts.episodes_dropped
    result.segments = fit(segments, seq_len=stage.seq_len, overflow=stage.overflow, counts=counts)
    counts.episodes_packed += encoded - (counts.episodes_dropped - dropped)
    for segment in result.segments:
        segment.turn = NO_TURNS  # only the overflow split needs move indices: 4 bytes a token less to ship and hold
    return result


def _start_worker(parent: int) -> None:
    """A worker: one tokenizer thread, and it dies with the main process (a killed pack leaves no workers behind)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: watch the parent instead
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


@contextmanager
def _single_threaded_here():
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def run_batches(stage: Stage, batches: Iterable[pa.RecordBatch], workers: int) -> Iterator[Encoded]:
    """Results of every batch, in input order, from `workers` processes (1: in this process).

    Each worker has a pipe of its own and one batch at a time; batches go round the workers in
    order and results come back in the same order. A worker that dies shows as a closed pipe, so
    pack stops with a clear error instead of waiting on it (a shared task queue can hang there).
    While the workers start (an interpreter, imports and a tokenizer each: about half a second),
    this process runs the first batches itself, so the cores are busy from the start.
    """
    if workers <= 1:
        for batch in batches:
            yield _run_here(stage, batch)
        return
    # spawn, not fork: the parent may already hold Arrow and tokenizer threads.
    context = multiprocessing.get_context("spawn")
    crew = [_Worker(context, stage) for _ in range(workers)]
    batches = iter(batches)
    try:
        while not any(worker.ready() for worker in crew):
            if (batch := next(batches, None)) is None:
                return
            yield _run_here(stage, batch)
        yield from _round_robin(crew, batches)
    finally:
        _stop(crew)


def _run_here(stage: Stage, batch: pa.RecordBatch) -> Encoded:
    with _single_threaded_here():
        return run_stage(stage, batch)


def _round_robin(crew: list[_Worker], batches: Iterator[pa.RecordBatch]) -> Iterator[Encoded]:
    sent: deque[_Worker] = deque()  # workers in the order their batches went out
    for worker in crew:
        if (batch := next(batches, None)) is None:
            break
        worker.send(batch)
        sent.append(worker)
    while sent:
        worker = sent.popleft()
        result = worker.receive()
        if (batch := next(batches, None)) is not None:
            worker.send(batch)
            sent.append(worker)
        elif not sent:  # that was the last result: let the workers exit while this one is packed
            _stop(crew, wait=False)
        yield result


def _stop(crew: list[_Worker], wait: bool = True) -> None:
    """Close every worker's pipe (an idle worker then ends by itself), then wait for them all."""
    for worker in crew:
        worker.conn.close()
    if wait:
        for worker in crew:
            worker.join()


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, context, stage: Stage):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, stage, os.getpid()), daemon=True)
        with _bare_main():
            self.process.start()
        child.close()  # the worker holds the only other end: its death closes the pipe

    def send(self, batch: pa.RecordBatch) -> None:
        try:
            self.conn.send(batch)
        except OSError:
            raise _died() from None

    def ready(self) -> bool:
        """Whether the worker has spoken: it is ready (or died, which receive then reports)."""
        return self.conn.poll()

    def receive(self) -> Encoded:
        try:
            result = self.conn.recv()
            if isinstance(result, str) and result == READY:
                result = self.conn.recv()
        except (EOFError, OSError):
            raise _died() from None
        if isinstance(result, BaseException):
            raise result
        return result

    def join(self) -> None:
        self.process.join(timeout=5)  # an idle worker sees its closed pipe and ends
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


@contextmanager
def _bare_main():
    """Start a worker without the caller's main module.

    spawn runs the parent's `__main__` (the gamelog command, or a user's script) again in every
    child, so that functions defined there can be found. A worker runs only gamelog's own code, so
    it is told of an empty main module instead: it starts faster (no CLI imports), and a script
    that calls pack() needs no `if __name__ == "__main__":` guard.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _died() -> GamelogError:
    return GamelogError("a pack worker process died (killed, out of memory, or it could not start); nothing was published. Re-run with fewer --workers, or --workers 1.")


def _serve(conn, stage: Stage, parent: int) -> None:
    """A worker's loop: a batch in, its Encoded (or the error it raised) out, until the pipe closes."""
    _start_worker(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        _tools(stage)
        conn.send(READY)
    except OSError:
        return
    except Exception as exc:  # the main process raises it with the first result
        conn.send(exc)
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = run_stage(stage, batch)
        except Exception as exc:  # e.g. --overflow error: the main process raises it
            result = exc
        try:
            conn.send(result)
        except OSError:  # the main process stopped (an error elsewhere): nothing left to do
            return
