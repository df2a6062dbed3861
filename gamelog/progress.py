"""Progress of long commands: a rich progress bar on a terminal, plain periodic lines otherwise.

    with progress("convert", unit="records") as update:
        update(done=1200, extra="3,400 episodes")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PLAIN_EVERY = 5.0  # seconds between lines when stderr is not a terminal


@contextmanager
def progress(label: str, *, unit: str, total: int | None = None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda **_: None
    elif sys.stderr.isatty():
        yield from _rich(label, unit, total)
    else:
        yield from _plain(label, unit, total)


def _rich(label: str, unit: str, total: int | None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(f"{unit}"), TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, rate="", extra="")
        started = time.perf_counter()

        def update(done: int, extra: str = "") -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:,.0f}/s", extra=extra)

        yield update


def _plain(label: str, unit: str, total: int | None):
    started = last = time.perf_counter()

    def update(done: int, extra: str = "") -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last < PLAIN_EVERY:
            return
        last = now
        rate = done / max(now - started, 1e-9)
        of = f"/{total:,}" if total else ""
        eta = f", about {(total - done) / rate:,.0f} s left" if total and rate else ""
        print(f"{label}: {done:,}{of} {unit}, {rate:,.0f}/s{', ' + extra if extra else ''}{eta}", file=sys.stderr, flush=True)

    yield update
