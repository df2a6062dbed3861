"""The `gamelog` command line: each command parses, calls one library function, prints.

Heavy libraries (polars, pyarrow, datasets) are imported inside the commands, so `gamelog --help`
starts fast. A GamelogError becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gamelog.errors import GamelogError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Prepare LLM training data as logs of a two-player game (player 1: the human side, player 2: the model).",
    pretty_exceptions_enable=False,
)


class Split(str, Enum):
    file = "file"
    line = "line"
    blank_line = "blank-line"


class Dedup(str, Enum):
    exact = "exact"
    none = "none"


class Unanswerable(str, Enum):
    keep = "keep"
    reject = "reject"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def convert(
    inputs: Annotated[list[str], typer.Argument(help="Files, directories, saved datasets or hf://org/name[:split].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for episodes-*.parquet, rejects.parquet, report.json.")],
    format: Annotated[str, typer.Option("--format", "-f", help="Input format, or auto to detect it from the record keys (see `gamelog formats`).")] = "auto",
    recipe: Annotated[Optional[str], typer.Option(help="TOML recipe (pipelines/NAME.toml) mapping a dataset's keys and roles.")] = None,
    split: Annotated[Split, typer.Option(help="How .txt files are cut into documents.")] = Split.blank_line,
    text_column: Annotated[Optional[str], typer.Option(help="Column holding the text (CSV, Parquet, JSONL) when it is not 'text'.")] = None,
    dedup: Annotated[Dedup, typer.Option(help="exact: keep records with identical episodes once (default); none: keep all.")] = Dedup.exact,
    unanswerable: Annotated[Unanswerable, typer.Option(help="QA questions without an answer: keep with an abstention answer, or reject.")] = Unanswerable.keep,
    strict: Annotated[bool, typer.Option(help="Stop at the first record that cannot be converted.")] = False,
    shard_rows: Annotated[int, typer.Option(help="Episodes per output shard.", min=1)] = 100_000,
    max_record_bytes: Annotated[int, typer.Option(help="Records larger than this are rejected as record_too_large.", min=1)] = 64 * 1024 * 1024,
) -> None:
    """Convert raw data into player-tagged episodes (Parquet), with rejects and a report."""
    from gamelog.convert import ConvertOptions, convert as run
    from gamelog.formats import resolve
    from gamelog.formats.recipe import load_recipe

    options = ConvertOptions(
        format=format if format == "auto" else resolve(format),
        recipe=load_recipe(recipe) if recipe else None,
        split=split.value,
        text_column=text_column,
        dedup=dedup.value,
        strict=strict,
        shard_rows=shard_rows,
        unanswerable=unanswerable.value,
        max_record_bytes=max_record_bytes,
    )
    report = run(inputs, out=out, options=options)
    from gamelog.summary import print_convert_summary

    print_convert_summary(report, out)
    if report.records_read and not report.records_converted:
        _fail(f"no record of {len(report.inputs)} input(s) could be converted; see {out / 'rejects.parquet'} for why.", 1)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Episodes directory (or one episodes Parquet file).")],
    json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Check episodes against the schema and the rules; exit 0 valid, 1 invalid, 2 usage error."""
    from gamelog.summary import print_validation
    from gamelog.validate import validate as run

    report = run(path)
    if json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_validation(report)
    raise typer.Exit(0 if report.valid else 1)


@app.command()
def schemas(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the *.schema.json files.")] = Path("schemas"),
    check: Annotated[bool, typer.Option(help="Exit 1 if the files in --out differ from the models.")] = False,
) -> None:
    """Write JSON Schema files generated from the record models."""
    from gamelog.schemas import check_schemas, write_schemas

    if check:
        stale = check_schemas(out)
        for name in stale:
            typer.echo(f"stale: {out / name} (run gamelog schemas --out {out})")
        raise typer.Exit(1 if stale else 0)
    for name in write_schemas(out):
        typer.echo(f"wrote {out / name}")


@app.command()
def formats() -> None:
    """List the input formats that convert understands."""
    from gamelog.formats import ALIASES, FORMATS

    for name, fmt in FORMATS.items():
        typer.echo(f"{name:20s} {fmt.summary}")
    typer.echo("aliases: " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()))


def main() -> None:
    try:
        app()
    except GamelogError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: no output was published under a final name.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
