"""Short summaries that the CLI prints at the end of a command: rich tables on a terminal, plain
aligned lines when the output goes to a file or a pipe (logs stay greppable, and rich, 0.05 s of
import, is not loaded for them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from gamelog.records import ConvertReport


def show_table(rows: list[tuple[str, str]], *, title: str | None = None, header: tuple[str, str] | None = None, right: bool = True, console: Console | None = None) -> None:
    """Two columns (a label, a value right-aligned when `right`): a rich table on a terminal or
    given console, else plain lines."""
    if console is None and not sys.stdout.isatty():
        lines = [title] if title else []
        listed = [header, *rows] if header else rows
        left = max((len(a) for a, _ in listed), default=0)
        width = max((len(b) for _, b in listed), default=0)
        lines += [f"{a:<{left}}  {b:>{width}}" if right else f"{a:<{left}}  {b}" for a, b in listed]
        print("\n".join(lines), flush=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=header is not None)
    table.add_column(header[0] if header else "name")
    table.add_column(header[1] if header else "value", justify="right" if right else "left")
    for a, b in rows:
        table.add_row(a, b)
    (console or Console()).print(table)


def print_convert_summary(report: ConvertReport, out: Path, console: Console | None = None) -> None:
    show_table(list(report.formats.items()), title=f"gamelog convert -> {out}", header=("input", "format"), right=False, console=console)
    rows = [
        ("records read", report.records_read),
        ("records converted", report.records_converted),
        ("records rejected", report.records_rejected),
        *((f"  rejected: {reason}", n) for reason, n in report.rejected_by_reason.items()),
        ("episodes written", report.episodes_written),
        ("turns written", report.turns_written),
        *((f"  episodes: {regime}", n) for regime, n in report.episodes_by_regime.items()),
    ]
    show_table([(name, f"{value:,}") for name, value in rows], console=console)
    if report.records_rejected:
        print(f"rejects with reasons and locations: {out / 'rejects.parquet'}", file=console.file if console else sys.stdout, flush=True)


def print_validation(report, console: Console | None = None) -> None:
    from rich.console import Console

    console = console or Console()
    status = "[green]valid[/green]" if report.valid else f"[red]invalid: {report.problems} problem(s)[/red]"
    held = f"{report.rows:,} rows, {report.tokens:,} tokens" if report.kind == "packed" else f"{report.episodes:,} episodes, {report.turns:,} turns"
    console.print(f"{report.path}: {len(report.files)} file(s), {held}: {status}")
    for problem in report.listed:
        where = f" episode {problem.episode_id}" if problem.episode_id else ""
        console.print(f"  {problem.file}{where}: [{problem.rule}] {problem.detail}", markup=False, highlight=False)
    if report.problems > len(report.listed):
        console.print(f"  ... and {report.problems - len(report.listed)} more (use --json for all listed ones)")


def print_pack_summary(manifest, out: Path, console: Console | None = None) -> None:
    rows = [(name.replace("_", " "), f"{value:,}") for name, value in manifest.counts.items() if value or name in ("episodes_read", "rows", "tokens_total", "tokens_trained")]
    rows += [(f"  rejected: {reason}", f"{n:,}") for reason, n in manifest.rejected_by_reason.items()]
    rows.append(("efficiency", f"{manifest.efficiency:.2%}"))
    show_table(rows, title=f"gamelog pack -> {out}  (template {manifest.template}, objective {manifest.objective})", console=console)
