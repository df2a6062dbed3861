"""The `gamelog` command line: each command parses, calls one library function, prints.

Heavy libraries (polars, pyarrow, datasets) are imported inside the commands, so `gamelog --help`
starts fast. A GamelogError becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gamelog.errors import GamelogError

# gamelog does no linear algebra, yet numpy's OpenBLAS starts a pool of threads when numpy is
# imported, and each forked worker inherits its fork handlers: with one BLAS thread, convert took
# 0.09 and pack 0.18 CPU-seconds less on 20,000 conversations. Set before any command imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Prepare LLM training data as logs of a two-player game (player 1: the human side, player 2: the model).",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich imports rich's markdown stack (0.13 s of start-up)
)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


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
    infer_roles: Annotated[bool, typer.Option(help="Text documents: find speakers and turns where the text has them (as --format transcript).")] = False,
    turn_separator: Annotated[Optional[str], typer.Option(help="Transcripts: utterances separated by this string alternate between two parties (e.g. ' __eou__ ', '\\n\\n').")] = None,
    player2: Annotated[Optional[str], typer.Option(help="Transcripts: the speaker who plays 2 (default: known labels, else the most frequent responder).")] = None,
    perspectives: Annotated[str, typer.Option(help="Transcripts: one episode, or 'all' (one per speaker as player 2).")] = "one",
    spacy_model: Annotated[Optional[str], typer.Option(help="Transcripts: an installed spaCy pipeline for question detection (default: rules on spaCy's blank English).")] = None,
    workers: Annotated[int, typer.Option(help="Processes that convert batches of records (0: one per core; inputs under 1 MiB run in one). The output is the same for any number.", min=0)] = 0,
    engine: Annotated[Engine, typer.Option(help="local, or ray: one Ray task per input file (see docs/scale.md).")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option(help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Convert raw data into player-tagged episodes (Parquet), with rejects and a report."""
    from gamelog.convert import ConvertOptions, convert as run, resolve
    from gamelog.formats.recipe import load_recipe
    from gamelog.roles import RoleOptions

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
        infer_roles=infer_roles,
        roles=RoleOptions(turn_separator=turn_separator, player2=player2, perspectives=perspectives, spacy_model=spacy_model),
        workers=workers,
    )
    if perspectives not in ("one", "all"):
        _fail("--perspectives takes one or all.")
    from gamelog.progress import progress

    if engine == Engine.ray:
        from gamelog.engines.ray_data import convert_on_ray

        report = convert_on_ray(inputs, out=out, options=options, address=ray_address, num_cpus=workers or None)
    else:
        with progress("convert", unit="records") as update:
            report = run(inputs, out=out, options=options, on_progress=lambda t: update(t.read, f"{t.episodes:,} episodes"))
    from gamelog.summary import print_convert_summary

    print_convert_summary(report, out)
    if report.records_read and not report.records_converted:
        _fail(f"no record of {len(report.inputs)} input(s) could be converted; see {out / 'rejects.parquet'} for why.", 1)


class Overflow(str, Enum):
    split = "split"
    truncate = "truncate"
    drop = "drop"
    error = "error"


class Objective(str, Enum):
    auto = "auto"
    sft = "sft"
    pretrain = "pretrain"
    preference = "preference"


@app.command()
def pack(
    episodes: Annotated[str, typer.Argument(help="Episodes directory written by gamelog convert (with --engine ray also a URI: s3://, gs://, file://).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for part-*.parquet, manifest.json (and rejects.parquet).")],
    tokenizer: Annotated[str, typer.Option(help="Tokenizer directory, tokenizer.json, vocab.json+merges.txt directory, hub id, or 'builtin' (byte-level demo default: pass a real one to train).")] = "builtin",
    seq_len: Annotated[int, typer.Option(help="Tokens per packed row.", min=8)] = 4096,
    objective: Annotated[Objective, typer.Option(help="auto: by each episode's regime; sft; pretrain (every token); preference (pair rows).")] = Objective.auto,
    template: Annotated[str, typer.Option(help="auto (the tokenizer's chat_template, else chatml or plain), jinja, chatml, llama-3, phi-3, mistral, gemma, plain.")] = "auto",
    overflow: Annotated[Overflow, typer.Option(help="Episodes longer than --seq-len: split at move boundaries, truncate, drop, or error. Every token cut is counted.")] = Overflow.split,
    returns: Annotated[Optional[float], typer.Option(help="Also write per-token discounted returns with this GAMMA.", min=0.0, max=1.0)] = None,
    train_thoughts: Annotated[bool, typer.Option(help="Train player-2 thought moves.")] = True,
    train_tool_calls: Annotated[bool, typer.Option(help="Train player-2 tool_call moves.")] = True,
    keep_suboptimal: Annotated[bool, typer.Option(help="Also train sub-optimal branches (rejected answers), with their negative reward.")] = False,
    window: Annotated[int, typer.Option(help="Episodes packed together by best-fit decreasing (fewer when they hold over WINDOW x seq-len / 4 tokens); bounds memory.", min=1)] = 20_000,
    shard_rows: Annotated[int, typer.Option(help="Rows per output shard.", min=1)] = 50_000,
    workers: Annotated[int, typer.Option(help="Processes that render and encode (0: one per core; an input of two batches of 512 or fewer runs in one). The output is the same for any number.", min=0)] = 0,
    engine: Annotated[Engine, typer.Option(help="local, or ray: blocks of --window episodes packed by Ray tasks (see docs/scale.md).")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option(help="--engine ray: the cluster to join (default: RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Tokenize, mask and pack episodes into Parquet training shards with a manifest."""
    # Arrow allocates from glibc's heap, which pack trims after each window, not from its mimalloc
    # pool, which kept pages of the batches read: at 10x the speed workload the peak moved between
    # 256 and 299 MiB from run to run and grew with the source path in every episode; now 238-250
    # (1x: 218-227 against 239-245 MiB), as fast. Read when pyarrow loads, so set before.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    from gamelog.pack import PackOptions, pack as run

    options = PackOptions(
        tokenizer=tokenizer, seq_len=seq_len, objective=objective.value, template=template, overflow=overflow.value,
        returns=returns, train_thoughts=train_thoughts, train_tool_calls=train_tool_calls, keep_suboptimal=keep_suboptimal,
        window=window, shard_rows=shard_rows, workers=workers,
    )
    if engine == Engine.ray:
        from gamelog.engines.ray_data import pack_on_ray

        manifest = pack_on_ray(episodes, out=out, options=options, address=ray_address, num_cpus=workers or None)
    else:
        from gamelog.progress import progress
        from gamelog.write.atomic import episode_rows

        total = sum(episode_rows(Path(episodes)))
        with progress("pack", unit="episodes", total=total) as update:
            manifest = run(Path(episodes), out=out, options=options, on_progress=lambda c: update(c.episodes_read, f"{c.episodes_packed:,} encoded, {c.rows:,} rows written"))
    from gamelog.summary import print_pack_summary  # after the run: the workers start sooner

    print_pack_summary(manifest, out)
    if tokenizer == "builtin":
        typer.echo("note: packed with the built-in byte-level demo tokenizer; pass --tokenizer DIR of your model to train.", err=True)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Episodes directory (or one episodes Parquet file).")],
    json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Check episodes or packed shards against the schema and the rules; exit 0 valid, 1 invalid, 2 usage error."""
    from gamelog.summary import print_validation
    from gamelog.validate import validate as run

    report = run(path)
    if json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_validation(report)
    raise typer.Exit(0 if report.valid else 1)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="Episodes directory or file, or a packed directory.")],
    episode: Annotated[Optional[str], typer.Option(help="Show this episode id (or the rows holding it).")] = None,
    regime: Annotated[Optional[str], typer.Option(help="Only episodes of this regime.")] = None,
    sample: Annotated[int, typer.Option(help="Show N at random (0: all).", min=0)] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    tokenizer: Annotated[Optional[str], typer.Option(help="Packed rows: tokenizer to decode with (default: the one in manifest.json).")] = None,
) -> None:
    """Show episodes (moves coloured by player) or packed rows (tokens coloured by loss mask)."""
    from rich.console import Console

    from gamelog.inspect import inspect as run

    panels = run(path, episode=episode, regime=regime, sample=sample or None, seed=seed, tokenizer=tokenizer)
    console = Console()
    for panel in panels:
        console.print(panel)
    console.print(f"{len(panels)} shown")


@app.command()
def report(
    path: Annotated[Path, typer.Argument(help="Episodes directory (from convert).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    shards: Annotated[Optional[Path], typer.Option(help="A packed directory (from pack) to add packing plots.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer for move lengths (default: the packed shards' one, else the byte-level builtin).")] = None,
) -> None:
    """Write one self-contained HTML page of plots about a dataset (no network needed to view it)."""
    from gamelog.report import write_report

    written = write_report(path, out=out, shards=shards, tokenizer=tokenizer)
    typer.echo(f"wrote {written}")


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
    from gamelog.convert import ALL_FORMATS
    from gamelog.formats import ALIASES

    for name, fmt in ALL_FORMATS.items():
        typer.echo(f"{name:20s} {fmt.summary}")
    typer.echo("aliases: " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()))


def main() -> None:
    try:
        app()
    except GamelogError as exc:
        typer.echo(f"error: {exc}", err=True)
        _leave(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: no output was published under a final name.", err=True)
        _leave(130)
    except SystemExit as exc:  # how typer ends every command
        if isinstance(exc.code, str):
            typer.echo(exc.code, err=True)
        _leave(exc.code if isinstance(exc.code, int) else int(exc.code is not None))
    _leave(0)


def _leave(code: int) -> None:
    """End the process once a command is done: what it wrote is closed and published, so the
    interpreter's teardown (freeing every object of numpy, pyarrow, pydantic... one by one: 0.1 to
    0.2 s a command) is skipped. Where Ray was started, its exit hook stops the local cluster: a
    normal exit then."""
    sys.stdout.flush()
    sys.stderr.flush()
    if "ray" in sys.modules:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
