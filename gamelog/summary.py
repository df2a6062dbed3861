"""Short summaries that the CLI prints at the end of a command (rich tables on a terminal)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from gamelog.records import ConvertReport


def print_convert_summary(report: ConvertReport, out: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"gamelog convert -> {out}", show_header=True)
    for column in ("input", "format"):
        table.add_column(column)
    for source, name in report.formats.items():
        table.add_row(source, name)
    console.print(table)
    counts = Table(show_header=False)
    counts.add_column("count")
    counts.add_column("value", justify="right")
    rows = [
        ("records read", report.records_read),
        ("records converted", report.records_converted),
        ("records rejected", report.records_rejected),
        *((f"  rejected: {reason}", n) for reason, n in report.rejected_by_reason.items()),
        ("episodes written", report.episodes_written),
        ("turns written", report.turns_written),
        *((f"  episodes: {regime}", n) for regime, n in report.episodes_by_regime.items()),
    ]
    for name, value in rows:
        counts.add_row(name, f"{value:,}")
    console.print(counts)
    if report.records_rejected:
        console.print(f"rejects with reasons and locations: {out / 'rejects.parquet'}")


def print_validation(report, console: Console | None = None) -> None:
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
    console = console or Console()
    table = Table(title=f"gamelog pack -> {out}  (template {manifest.template}, objective {manifest.objective})", show_header=False)
    table.add_column("count")
    table.add_column("value", justify="right")
    for name, value in manifest.counts.items():
        if value or name in ("episodes_read", "rows", "tokens_total", "tokens_trained"):
            table.add_row(name.replace("_", " "), f"{value:,}")
    for reason, n in manifest.rejected_by_reason.items():
        table.add_row(f"  rejected: {reason}", f"{n:,}")
    table.add_row("efficiency", f"{manifest.efficiency:.2%}")
    console.print(table)
