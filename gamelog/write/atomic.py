"""Atomic output (write under a temporary name, then rename, so no final name is ever partial),
and finding and reading back what gamelog wrote."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gamelog.errors import GamelogError


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def publish(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def episode_files(path: Path) -> list[Path]:
    """The episodes files of a convert output directory (or the one file given)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("episodes-*.parquet"))
        if files:
            return files
        raise GamelogError(f"{path}: no episodes-*.parquet files here; pass the --out directory of gamelog convert.")
    raise GamelogError(f"{path}: no such file or directory.")


def episode_rows(path: Path) -> list[int]:
    """Episodes in each episodes file of a convert output (or in the one file given), from the
    footers; a file that is not Parquet (raw data given to pack, a damaged file) stops the command
    with its name and what to pass instead."""
    return [footer_rows(file, str(file)) for file in episode_files(path)]


def footer_rows(file, name: str, filesystem=None) -> int:
    """Rows of an episodes file (a path; on `filesystem`, a pyarrow filesystem, when given) from its
    footer; one that is not Parquet stops the command, `name` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if filesystem is None:
            return pq.ParquetFile(file).metadata.num_rows
        with filesystem.open_input_file(file) as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        detail = " ".join(str(exc).split())  # one line, as every error
        raise GamelogError(
            f"{name}: not an episodes Parquet file ({detail}); pass the --out directory of gamelog convert "
            f"(raw data goes through `gamelog convert {name} --out DIR` first), or run gamelog validate on a damaged one."
        ) from None


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file from its footer; 0 when the file is absent (no rejects were written)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def read_output(path: Path, columns: list[str] | None = None):
    """A Parquet file that gamelog wrote, whole; a damaged one stops the command with its name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(path, exc) from exc


def output_batches(path: Path, batch_size: int, columns: list[str]):
    """A Parquet file that gamelog wrote, `batch_size` rows at a time (read_output's streaming
    sibling); a damaged one stops the command with its name."""
    import pyarrow as pa

    from gamelog.read.tables import parquet_batches

    try:
        yield from parquet_batches(path, batch_size, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable(path, exc) from exc


def unreadable(path: Path, exc: Exception) -> GamelogError:
    """The error for a file gamelog wrote that cannot be read (damaged, or not Parquet)."""
    return GamelogError(f"{path}: not readable ({exc}); run gamelog validate on its directory and re-create it.")


def shard_entries(out: Path, names: list[str]) -> list[dict]:
    """name, rows and sha256 of each published shard, as report.json and manifest.json list them."""
    return [{"name": n, "rows": parquet_rows(out / n), "sha256": sha256(out / n)} for n in names]


def remove_stale_temporaries(out: Path) -> None:
    """Temporary files of an earlier run that was killed before it could publish them."""
    for stale in out.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    tmp = temporary(path)
    tmp.write_text(text, encoding="utf-8")
    publish(tmp, path)
