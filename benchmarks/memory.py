"""Peak memory of `gamelog convert` and `gamelog pack` on the speed workload, 1x and 10x.

    python benchmarks/memory.py [--conversations 20000] [--repeat 10]

The workload is benchmarks/speed.py's (unique OpenAI-messages conversations from the shared chat
and instruct files; phi-3-mini, seq_len 4096). Each command is a separate process; its peak RSS is
the kernel's (wait4), which for pack is the largest of the main process and its workers, taken
from a small starter process (`speed.measured`) so that it is not floored at this one's. Flat
memory means the 10x run peaks within 1.2x of the 1x run: both commands stream, convert in batches
and pack in windows of --window episodes (20,000 by default). Convert runs twice: with --dedup none,
and with the default exact de-duplication, which remembers every record's digest (about 40 bytes a
record, `gamelog/dedup.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from speed import SEQ_LEN, TOKENIZER, machine, measured, workload  # noqa: E402


def peak(*args: str) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of one gamelog command (`speed.measured`: not floored at this process's peak)."""
    done, rss, seconds, _ = measured([sys.executable, "-m", "gamelog.cli", *args])
    if done.returncode != 0:
        raise SystemExit(f"gamelog {args[0]} failed: {done.stderr[-800:]}")
    return rss, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    peaks: dict[str, list[float]] = {"convert": [], "convert, exact de-duplication (the default)": [], "pack": []}
    with tempfile.TemporaryDirectory() as tmp:
        for times in (1, args.repeat):
            folder = Path(tmp) / f"x{times}"
            folder.mkdir()
            path = workload(folder, args.conversations * times)
            rss, seconds = peak("convert", str(path), "--dedup", "none", "--out", str(folder / "episodes"))
            peaks["convert"].append(rss)
            print(f"{times:>3}x convert: {args.conversations * times:>9,} conversations, peak RSS {rss:7.1f} MiB, {seconds:6.1f} s")
            rss, seconds = peak("convert", str(path), "--out", str(folder / "episodes-dedup"))  # every digest is remembered: the one state that grows
            peaks["convert, exact de-duplication (the default)"].append(rss)
            print(f"{times:>3}x convert, exact de-duplication: peak RSS {rss:7.1f} MiB, {seconds:6.1f} s")
            rss, seconds = peak("pack", str(folder / "episodes"), "--tokenizer", str(TOKENIZER), "--seq-len", str(SEQ_LEN), "--out", str(folder / "shards"))
            peaks["pack"].append(rss)
            counts = json.loads((folder / "shards" / "manifest.json").read_text())["counts"]
            print(f"{times:>3}x pack:    {counts['tokens_total']:>9,} tokens, peak RSS {rss:7.1f} MiB, {seconds:6.1f} s")
    for command, (small, large) in peaks.items():
        print(f"peak RSS ratio {args.repeat}x / 1x, {command}: {large / small:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
