"""Processes that run a task over batches in parallel, with the results in input order.

`Crew(task, workers)` is this process and `workers - 1` worker processes; `run(batches)` gives
`task(batch)` for every batch, in input order, so what a command writes does not depend on the
worker count. The task is a picklable callable; its `prepare()` (if it has one) loads what it
needs, in a worker before its first batch; its `weigh(batch)` (if it has one) gives a batch's
input in full batches (its bytes over the reader's batch bytes), and then the batches out at once
are bounded by their input as well as by their count. `gamelog pack` runs its per-batch stage on
a crew (`gamelog.pack.workers`), `gamelog convert` its record conversion (`gamelog.convert`).

This process runs a batch itself whenever the oldest batch out is not back yet, so it is never
idle and a slow start of the workers costs nothing; each worker holds up to DEPTH batches (read
into a queue by a thread of its own) and sends results from another thread, so it is never idle
either. A worker that dies shows as a closed pipe: the command stops with a clear error instead
of waiting on it. Each process runs a tokenizer on one thread (TOKENIZERS_PARALLELISM=false):
the cores are shared out as processes, which also run the Python work in parallel.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from gamelog.errors import GamelogError
from gamelog.memory import buffers_reused

READY = "ready"  # a worker's first message: its task is prepared (or the error that stopped it)
PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent dies
PIPE_BUFFER = 4 << 20  # bytes a pipe holds: a batch or a result crosses at once (see _widen)
# How workers start. On Linux they are forked when the crew starts, once this process has loaded
# what the task needs, so they start in milliseconds and share it (a spawned worker imports and
# loads for up to half a second of CPU, on a core that could run batches); datasets' map and
# PyTorch's DataLoader fork their workers the same way. Elsewhere fork is unsafe or missing, and
# workers are spawned at once, each preparing the task itself.
START = "fork" if sys.platform == "linux" else "spawn"
# New container objects between runs of Python's cyclic collector while a crew runs (Python's
# default is 700). The batches make and drop hundreds of thousands of dicts, lists and arrays, none
# in cycles, so refcounting frees them; at 700 the collector ran 700 times per 20,000 conversations
# packed and took 0.22 s of one core's 8 s (convert: 0.12 s), at 50,000 twice and 0.03 s.
COLLECT_EVERY = 50_000


@contextmanager
def batch_settings():
    """While batches run: the cyclic collector every COLLECT_EVERY new objects, and freed buffers
    kept in the heap for the next batch (`gamelog.memory.buffers_reused`); as before after."""
    before = gc.get_threshold()
    gc.set_threshold(max(COLLECT_EVERY, before[0]), *before[1:])
    try:
        with buffers_reused():
            yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def one_tokenizer_thread():
    """TOKENIZERS_PARALLELISM=false while inside: this process's share of the cores is one."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


DEPTH = 2  # batches a worker holds by default (sent, their results not yet taken): the one it runs and the next
# Batches out (sent, or run here and waiting for an older one) per process at most, by default: past
# that this process waits for a slow worker instead of running on and holding ever more results.
# A task whose batches run long passes more of both (`Crew(..., depth=, ahead=)`; see gamelog.pack).
AHEAD = 4
# Where the task weighs its batches (`weigh`: a batch's input in full batches, its bytes over the
# reader's batch bytes), the batches out are also bounded to AHEAD full batches a process, so that
# batches of one big record each (a book a batch) are not held AHEAD a process; each process still
# gets one batch, whatever its size.


class Crew:
    """The processes of a run: this one and `workers - 1` workers. Forked workers start when `start`
    or `run` is first called, after this process has loaded its tools; spawned ones start at once,
    so that they load while this process does.

    `run` gives `task(batch)` for every batch, in input order. Each worker has a pipe of its own;
    batches go to the workers in input order, and each worker's results come back in the order
    it got them. Whenever the oldest batch out is still with a worker, this process runs the next
    batch itself. A worker that dies shows as a closed pipe, so pack stops with a clear error
    instead of waiting on it.
    """

    def __init__(self, task: Callable[[Any], Any], workers: int, *, depth: int = DEPTH, ahead: int = AHEAD):
        self.task = task
        self.workers = workers
        self.depth, self.ahead = depth, ahead
        self.members: list[_Worker] = []
        if START == "spawn":  # a spawned worker loads for half a second: start it before this process loads
            self.start()

    def start(self) -> None:
        """Start the workers, once; forked workers share the tools this process has loaded (see START)."""
        if self.members or self.workers < 2:
            return
        context = multiprocessing.get_context(START)
        try:
            with one_tokenizer_thread():  # a fork after a tokenizer ran threads would disable them with a warning
                for _ in range(self.workers - 1):
                    self.members.append(_Worker(context, self.task, [m.conn for m in self.members]))
            if START == "fork":  # ready in milliseconds: wait, so that the first batches go to them, not all here
                for member in self.members:
                    member.started(wait=True)
        except BaseException:
            _stop(self.members)
            raise

    def run(self, batches: Iterable, total: float = float("inf")) -> Iterator:
        """Results of the batches in input order; `total` is how many there are, if known."""
        self.start()
        with batch_settings():
            if not self.members:
                for batch in batches:
                    yield _run_here(self.task, batch)
                return
            yield from _share(self.task, self.members, iter(batches), total, getattr(self.task, "weigh", None), self.depth, self.ahead)

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, *exc) -> None:
        _stop(self.members)


@dataclass
class _Slot:
    """One batch out, in input order: its result once it is in, and its weight where weighed."""

    result: Any = None
    weight: float = 0.0
    here: bool = False  # run by this process


def _share(task, crew: list[_Worker], batches: Iterator, total: float = float("inf"), weigh: Callable[[Any], float] | None = None, depth: int = DEPTH, ahead: int = AHEAD) -> Iterator:
    """Results in input order; `total` (the batch count, when known) lets the last batches stay
    here, so that this process and the workers finish together instead of one waiting for the other.
    With `weigh` (a batch's input in full batches) the batches out are bounded by their input too (see AHEAD)."""
    slots: deque[_Slot] = deque()
    left = True  # batches not yet handed out
    handed = 0
    out = 0.0  # the weight of the batches out
    here = 0  # batches run here and not yet given
    light = lambda: weigh is None or out < ahead * (len(crew) + 1)  # each process still gets one batch, whatever its weight

    def taken(slot: _Slot, batch) -> _Slot:
        nonlocal out, handed
        handed += 1
        if weigh is not None:
            slot.weight = weigh(batch)
            out += slot.weight
        slots.append(slot)
        return slot

    while left or slots:
        for worker in crew:
            while worker.held and worker.ready():  # take results as they come: the worker gets its next batch sooner
                worker.receive()
            while left and worker.started() and worker.held < depth and total - handed > sum(w.held for w in crew) + 1 and (not worker.held or light()):
                if (batch := next(batches, None)) is None:
                    left = False
                    _stop(crew, wait=False)  # nothing more to send: idle workers may end
                    break
                taken(worker.send(batch), batch)
        if slots and slots[0].result is not None:
            slot = slots.popleft()
            out -= slot.weight
            here -= slot.here
            yield slot.result
        elif left and len(slots) < ahead * (len(crew) + 1) and (not here or light()):  # the oldest batch is still out (or none is): run one here
            if (batch := next(batches, None)) is not None:
                here += 1
                taken(_Slot(here=True), batch).result = _run_here(task, batch)
            else:
                left = False
                _stop(crew, wait=False)
        else:  # all handed out, or AHEAD batches (or their weight) a process are out: wait for the worker that has the oldest batch
            next(worker for worker in crew if worker.holds(slots[0])).receive()


def _run_here(task, batch):
    with one_tokenizer_thread():
        return task(batch)


def _stop(crew: list[_Worker], wait: bool = True) -> None:
    """Close every worker's pipe (an idle worker then ends by itself), then wait for them all."""
    for worker in crew:
        worker.done = True
        if wait or worker.held == 0:  # a worker still running a batch keeps its pipe until its result is in
            worker.conn.close()
    if wait:
        for worker in crew:
            worker.join()


class _Worker:
    """One worker process and its pipe."""

    def __init__(self, context, task, others: list):
        self.conn, child = context.Pipe()  # a socket pair
        _widen(self.conn, child)
        # a forked worker inherits this process's ends of its pipe and of the other workers' pipes:
        # it closes them, or a worker would never see its pipe close
        self.process = context.Process(target=_serve, args=(child, task, os.getpid(), [*others, self.conn]), daemon=True)
        with _bare_main():
            self.process.start()
        child.close()  # the worker holds the only other end: its death closes the pipe
        self.is_started = False
        self.pending: deque[_Slot] = deque()  # slots of the batches sent, oldest first
        self.done = False  # no more batches will come

    def send(self, batch) -> _Slot:
        try:
            self.conn.send(batch)
        except OSError:
            raise _died() from None
        slot = _Slot()
        self.pending.append(slot)
        return slot

    @property
    def held(self) -> int:
        """Batches sent whose results are not yet in."""
        return len(self.pending)

    def holds(self, slot: _Slot) -> bool:
        return bool(self.pending) and self.pending[0] is slot

    def started(self, wait: bool = False) -> bool:
        """Whether the worker has prepared its task (its first message says so); `wait`: until it has."""
        if not self.is_started and (wait or self.conn.poll()):
            self.is_started = self._message() == READY
        return self.is_started

    def ready(self) -> bool:
        """Whether the worker has a result to give (or died, which receive then reports)."""
        return self.conn.poll()

    def receive(self) -> None:
        """The oldest result into its slot; a worker whose last result is in, with nothing more to come, may end."""
        self.pending.popleft().result = self._message()
        if not self.pending and self.done and not self.conn.closed:
            self.conn.close()

    def _message(self):
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            raise _died() from None
        if isinstance(message, BaseException):
            raise message
        return message

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


def _widen(*conns) -> None:
    """Socket buffers of PIPE_BUFFER for both ends of a pipe (as far as the system allows).

    With the default 208 KiB a batch crosses in several pieces, and the receiving side's reader
    thread needs the GIL for each: the sender waited up to a switch interval a piece (convert's
    main process spent 0.18 s of 1.2 s sending)."""
    for conn in conns:
        sock = socket.socket(fileno=conn.fileno())
        try:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, PIPE_BUFFER)
        except OSError:  # not a socket on this platform, or the size refused: the default stays
            pass
        finally:
            sock.detach()


def _died() -> GamelogError:
    return GamelogError("a worker process died (killed, out of memory, or it could not start); nothing was published. Re-run with fewer --workers, or --workers 1.")


def _serve(conn, task, parent: int, others: list) -> None:
    """A worker's loop: a batch in, its result (or the error it raised) out, until the pipe closes.

    One thread reads the batches into a queue as they come and another sends the results, so
    neither the main process nor this loop waits for the other to be free. The threads move bytes
    only: the loop unpickles the batches and pickles the results itself. Pickling in the sender
    thread took the GIL from the loop's next batch a switch interval at a time: the loop waited
    0.76 s over 219 batches of packing ten times the speed workload, 0.33-0.41 s this way.
    """
    for other in others:
        other.close()
    _start_worker(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        getattr(task, "prepare", lambda: None)()  # a forked worker has what it needs already
        conn.send(READY)
    except OSError:
        return
    except Exception as exc:  # the main process raises it as the worker's first message
        with suppress(Exception):  # unless it stopped already (it meets the same error) or the error does not pickle
            conn.send(exc)
        return
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_into, args=(conn, inbox), daemon=True).start()
    sender = threading.Thread(target=_send_from, args=(conn, outbox), daemon=True)
    sender.start()
    with batch_settings():
        while (data := inbox.get()) is not None:
            try:
                result = task(ForkingPickler.loads(data))
            except Exception as exc:  # e.g. pack --overflow error: the main process raises it
                result = exc
            outbox.put(_pickled(result))
    outbox.put(None)
    sender.join()


def _pickled(result) -> bytes:
    """A result (or the error a batch raised) as the bytes that cross the pipe; one that does not
    pickle becomes an error the main process raises, instead of a worker that stops answering."""
    try:
        return ForkingPickler.dumps(result)
    except Exception as exc:
        return ForkingPickler.dumps(GamelogError(f"a worker could not send its result back ({type(exc).__name__}: {exc}); re-run with --workers 1."))


def _read_into(conn, inbox: queue.SimpleQueue) -> None:
    """Pickled batches from the pipe into the queue; None once the pipe is closed."""
    while True:
        try:
            inbox.put(conn.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)
            return


def _send_from(conn, outbox: queue.SimpleQueue) -> None:
    """Pickled results from the queue into the pipe until None; a result waits here, not in the worker's
    loop, while the main process is busy with a batch of its own."""
    while (result := outbox.get()) is not None:
        try:
            conn.send_bytes(result)
        except OSError:  # the main process stopped (an error elsewhere): nothing left to do
            return


def _start_worker(parent: int) -> None:
    """A worker: one tokenizer thread, and it dies with the main process (a killed command leaves no workers behind)."""
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
