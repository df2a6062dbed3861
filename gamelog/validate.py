"""`gamelog validate`: check episodes Parquet against the schema and the rules of the game.

The checks are Polars expressions over the turns of CHECK_EPISODES episodes at a time (no per-row
Python, and memory that does not grow with a file's size), so a large directory validates at
Parquet-scan speed. Each problem names the file, the episode and the rule it breaks.

Rules: schema equal to the one derived from `Episode`; players 1/2 only; each role owned by its
player; non-empty content; optimality set, and `unknown` on player-1 moves; rewards, outcomes and
weights finite; rank >= 0 and only inside a group; a ranked group has a rank-0 episode and one
regime; episode ids unique across files; meta is JSON; report.json counts add up.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from pydantic import BaseModel, Field

from gamelog.errors import GamelogError
from gamelog.records import ROLE_PLAYER, ConvertReport, Game, Optimality, Regime, Role
from gamelog.write.atomic import episode_files, parquet_rows, sha256
from gamelog.write.shards import EPISODE_SCHEMA

MAX_LISTED = 50
CHECK_EPISODES = 8192  # episodes checked at once (a file holds up to convert's --shard-rows, 100,000 by default)


class Problem(BaseModel):
    file: str
    rule: str
    detail: str
    episode_id: str | None = None


class ValidationReport(BaseModel):
    path: str
    files: list[str]
    kind: str = "episodes"  # or "packed"
    episodes: int = 0
    turns: int = 0
    rows: int = 0
    tokens: int = 0
    problems: int = 0
    listed: list[Problem] = Field(default_factory=list, description=f"The first {MAX_LISTED} problems.")

    @property
    def valid(self) -> bool:
        return self.problems == 0

    def add(self, problems: list[Problem], count: int | None = None) -> None:
        self.problems += len(problems) if count is None else count
        self.listed.extend(problems[: max(0, MAX_LISTED - len(self.listed))])


def validate(path: Path) -> ValidationReport:
    """Episodes (a directory from convert, or one file) or packed shards (a directory with manifest.json)."""
    if path.is_dir() and (path / "manifest.json").exists():
        from gamelog.pack.check import validate_packed

        report = ValidationReport(path=str(path), files=[], kind="packed")
        validate_packed(path, report)
        return report
    files = episode_files(path)
    report = ValidationReport(path=str(path), files=[f.name for f in files])
    ids = []
    for file in files:
        grouped = []  # the grouped episodes' few fields: a group's episodes may fall in different parts
        for frame in _read(file, report):
            report.episodes += frame.height
            ids.append(frame.select("episode_id", "_file"))
            _check_episodes(frame, file.name, report)
            _check_turns(frame, file.name, report)
            grouped.append(frame.filter(frame["group_id"].is_not_null()).select("group_id", "rank", "regime", "episode_id"))
        if grouped:
            _check_groups(grouped, file.name, report)
    if ids:
        _check_unique_ids(ids, report)
    if path.is_dir():
        _check_report(path, report)
    return report


def _read(file: Path, report: ValidationReport):
    """The file's episodes as Polars frames of CHECK_EPISODES rows (with their row in the file); none
    where the file is unreadable or of another schema, which is reported."""
    import polars as pl
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
    except Exception as exc:  # pyarrow raises several kinds for damaged files; all mean unreadable
        report.add([Problem(file=file.name, rule="readable", detail=f"not a readable Parquet file: {exc}")])
        return
    if not schema.remove_metadata().equals(EPISODE_SCHEMA.remove_metadata()):
        missing = set(EPISODE_SCHEMA.names) - set(schema.names)
        extra = set(schema.names) - set(EPISODE_SCHEMA.names)
        detail = f"schema differs from the Episode schema (missing {sorted(missing)}, extra {sorted(extra)}, or types differ); re-run gamelog convert."
        report.add([Problem(file=file.name, rule="schema", detail=detail)])
        return
    scan = pl.scan_parquet(file).with_row_index("_row").with_columns(_file=pl.lit(file.name))
    for row in range(0, parquet_rows(file), CHECK_EPISODES):
        try:
            frame = scan.slice(row, CHECK_EPISODES).collect()  # the row groups the slice needs, no more
        except (pl.exceptions.PolarsError, OSError) as exc:  # footer intact, pages damaged
            report.add([Problem(file=file.name, rule="readable", detail=f"Parquet data pages are damaged from row {row} on ({exc}); re-run gamelog convert.")])
            return
        yield frame


def _problems(frame, file: str, rule: str, message) -> list[Problem]:
    """One Problem per offending row of `frame` (which has episode_id and a 'why' column)."""
    return [Problem(file=file, rule=rule, detail=message(row), episode_id=row["episode_id"]) for row in frame.head(MAX_LISTED).iter_rows(named=True)]


def _check_episodes(frame, file: str, report: ValidationReport) -> None:
    import polars as pl

    checks = {
        "regime": ~pl.col("regime").is_in(list(Regime.__args__)),
        "game": ~pl.col("game").is_in(list(Game.__args__)),
        "turns": pl.col("turns").list.len().fill_null(0) == 0,
        "rank": (pl.col("rank") < 0) | (pl.col("rank").is_not_null() & pl.col("group_id").is_null()),
        "outcome": pl.col("outcome").is_nan() | pl.col("outcome").is_infinite(),
    }
    for rule, bad in _broken(frame, {rule: bad.fill_null(False) for rule, bad in checks.items()}).items():
        rows = frame.filter(bad)
        detail = {
            "regime": lambda r: f"row {r['_row']}: regime '{r['regime']}' is not one of {Regime.__args__}.",
            "game": lambda r: f"row {r['_row']}: game '{r['game']}' is not one of {Game.__args__}.",
            "turns": lambda r: f"row {r['_row']}: the episode has no turns.",
            "rank": lambda r: f"row {r['_row']}: rank {r['rank']} must be >= 0 and belong to a group_id.",
            "outcome": lambda r: f"row {r['_row']}: outcome {r['outcome']} is not finite.",
        }[rule]
        report.add(_problems(rows, file, rule, detail), rows.height)
    bad_meta = [r for r in frame.select("episode_id", "_row", "meta").iter_rows(named=True) if not _is_json_object(r["meta"])]
    report.add([Problem(file=file, rule="meta", detail=f"row {r['_row']}: meta is not a JSON object.", episode_id=r["episode_id"]) for r in bad_meta[:MAX_LISTED]], len(bad_meta))


def _broken(frame, checks: dict) -> dict:
    """The checks that some row of the frame fails, found in one pass over it."""
    failed = frame.select([bad.any().alias(rule) for rule, bad in checks.items()]).row(0, named=True)
    return {rule: bad for rule, bad in checks.items() if failed[rule]}


def _is_json_object(text: str | None) -> bool:
    try:
        return isinstance(orjson.loads(text or ""), dict)
    except orjson.JSONDecodeError:
        return False


def _check_turns(frame, file: str, report: ValidationReport) -> None:
    import polars as pl

    turns = frame.select("episode_id", "_row", pl.col("turns")).explode("turns").unnest("turns").with_columns(
        _turn=pl.int_range(pl.len()).over("_row")
    )
    report.turns += turns.height
    owner = pl.col("role").replace_strict(ROLE_PLAYER, default=None, return_dtype=pl.Int8)
    checks = {
        "player": ~pl.col("player").is_in([1, 2]),
        "role": ~pl.col("role").is_in(list(Role.__args__)),
        "role_player": owner.is_not_null() & (owner != pl.col("player")),
        "content": pl.col("content").is_null() | (pl.col("content").str.len_bytes() == 0),
        "optimality": ~pl.col("optimality").is_in(list(Optimality.__args__)) | (pl.col("optimality").is_null()),
        "player1_label": (pl.col("player") == 1) & (pl.col("optimality") != "unknown"),
        "reward": pl.col("reward").is_nan() | pl.col("reward").is_infinite(),
        "weight": pl.col("weight").is_nan() | pl.col("weight").is_infinite() | (pl.col("weight") < 0),
    }
    for rule, bad in _broken(turns, {rule: bad.fill_null(rule in ("optimality",)) for rule, bad in checks.items()}).items():
        rows = turns.filter(bad)
        message = f"{{where}}: breaks rule '{rule}' ({_RULES[rule]})"
        report.add(_problems(rows, file, rule, lambda r, m=message: m.format(where=f"row {r['_row']} turn {r['_turn']}") + f"; found player={r['player']} role={r['role']} optimality={r['optimality']}."), rows.height)


_RULES = {
    "player": "player is 1 or 2",
    "role": f"role is one of {Role.__args__}",
    "role_player": "each role belongs to its player: assistant, tool_call, thought, text -> 2; system, user, tool, context -> 1",
    "content": "content is not empty",
    "optimality": f"optimality is one of {Optimality.__args__}",
    "player1_label": "player-1 moves are labelled unknown",
    "reward": "rewards are finite",
    "weight": "weights are finite and >= 0",
}


def _check_groups(grouped: list, file: str, report: ValidationReport) -> None:
    """A file's grouped episodes (group_id, rank, regime, episode_id), in the parts they were read in."""
    import polars as pl

    groups = (
        pl.concat(grouped)
        .group_by("group_id")
        .agg(best=pl.col("rank").min(), regimes=pl.col("regime").n_unique(), episode_id=pl.col("episode_id").first())
    )
    bad = groups.filter((pl.col("best").is_not_null() & (pl.col("best") != 0)) | (pl.col("regimes") > 1))
    detail = lambda r: f"group {r['group_id']}: a ranked group needs a rank-0 episode and one regime (best rank {r['best']}, {r['regimes']} regimes)."
    report.add(_problems(bad, file, "group", detail), bad.height)


def _check_unique_ids(ids: list, report: ValidationReport) -> None:
    import polars as pl

    dup = pl.concat(ids).group_by("episode_id").agg(files=pl.col("_file").unique().sort(), n=pl.len()).filter(pl.col("n") > 1)
    detail = lambda r: f"episode_id {r['episode_id']} appears {r['n']} times (in {', '.join(r['files'])}); ids must be unique."
    report.add(_problems(dup, ", ".join(report.files[:3]), "unique_id", detail), dup.height)


def _check_report(path: Path, report: ValidationReport) -> None:
    file = path / "report.json"
    if not file.exists():
        return
    try:
        counts = ConvertReport.model_validate_json(file.read_bytes())
    except ValueError as exc:
        report.add([Problem(file="report.json", rule="report", detail=f"report.json does not parse as a convert report: {str(exc)[:300]}")])
        return
    checks = [
        (counts.records_read == counts.records_converted + counts.records_rejected, f"records_read {counts.records_read} != converted {counts.records_converted} + rejected {counts.records_rejected}"),
        (counts.records_rejected == sum(counts.rejected_by_reason.values()), "records_rejected differs from the sum of rejected_by_reason"),
        (counts.episodes_written == report.episodes, f"episodes_written {counts.episodes_written} but the shards hold {report.episodes}"),
        (counts.turns_written == report.turns, f"turns_written {counts.turns_written} but the shards hold {report.turns}"),
        (sorted(s["name"] for s in counts.shards) == report.files, f"report lists shards {[s['name'] for s in counts.shards]} but the directory holds {report.files}"),
        (parquet_rows(path / "rejects.parquet") == counts.records_rejected, f"rejects.parquet holds {parquet_rows(path / 'rejects.parquet')} rows but records_rejected is {counts.records_rejected}"),
    ]
    report.add([Problem(file="report.json", rule="report", detail=detail) for ok, detail in checks if not ok])
    for shard in counts.shards:
        file = path / shard["name"]
        if not file.exists():
            report.add([Problem(file=shard["name"], rule="missing_shard", detail=f"{shard['name']} is listed in report.json but missing; re-run gamelog convert.")])
        elif sha256(file) != shard["sha256"]:
            report.add([Problem(file=shard["name"], rule="checksum", detail=f"{shard['name']}: sha256 differs from report.json (the file changed or is damaged).")])

