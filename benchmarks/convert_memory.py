"""Peak memory of `gamelog convert` on the shared data, 1x and 10x: streaming keeps it flat.

    python benchmarks/convert_memory.py [--repeat 10]

Builds the workloads from ../shared/data/{instruct,chat,preference,qa,text}: 1x is every file
once; 10x repeats each file's records ten times inside one file of the same container (so a JSON
array becomes a ten-times longer array, a .jsonl.gz a ten-times longer stream). Each run is a
separate `gamelog convert` process; its peak RSS comes from the kernel (wait4, through a small
starter process: `speed.measured`), its time from the wall clock. Prints both runs and the ratio;
the target is 10x within 1.2x of 1x.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from speed import measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FAMILIES = ("instruct", "chat", "preference", "qa", "text")


def repeat_file(source: Path, target: Path, times: int) -> None:
    """Write `source`'s records `times` times into `target`, keeping the container."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as handle:
        data = handle.read()
    if source.name.endswith(".json"):
        doc = json.loads(data)
        if isinstance(doc, list):
            body = b",".join([json.dumps(doc).encode()[1:-1]] * times)
            data = b"[" + body + b"]"
        else:  # {"data": [...]} container
            doc["data"] = doc["data"] * times
            data = json.dumps(doc).encode()
    else:
        data = (data.rstrip(b"\n") + b"\n\n") * times
    with (gzip.open if target.suffix == ".gz" else open)(target, "wb") as handle:
        handle.write(data)


def workload(folder: Path, times: int) -> Path:
    folder.mkdir(parents=True)
    for family in FAMILIES:
        for source in sorted((SHARED / family).iterdir()):
            if times == 1:
                shutil.copy(source, folder / source.name)
            else:
                repeat_file(source, folder / source.name, times)
    return folder


def measure(inputs: Path, out: Path, *extra: str) -> tuple[float, float, dict]:
    """Peak RSS (MiB; `speed.measured`: not floored at this process's peak), seconds and report of one convert."""
    done, rss, seconds, _ = measured([sys.executable, "-m", "gamelog.cli", "convert", str(inputs), "--out", str(out), *extra])
    if done.returncode != 0:
        raise SystemExit(f"gamelog convert failed on {inputs}: {done.stderr[-800:]}")
    report = json.loads((out / "report.json").read_text())
    return rss, seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        small = workload(base / "x1", 1)
        large = workload(base / f"x{args.repeat}", args.repeat)
        size = lambda p: sum(f.stat().st_size for f in p.iterdir()) / 2**20
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
        rows = []
        for label, inputs in (("1x", small), (f"{args.repeat}x", large)):
            rss, seconds, report = measure(inputs, base / f"out-{label}", "--dedup", "none")
            rows.append(rss)
            print(
                f"{label:>4}: input {size(inputs):7.1f} MiB  records {report['records_read']:>8,}  "
                f"episodes {report['episodes_written']:>8,}  peak RSS {rss:7.1f} MiB  {seconds:6.2f} s  "
                f"{report['records_read'] / seconds:9,.0f} records/s"
            )
            assert report["records_read"] == report["records_converted"] + report["records_rejected"]
        print(f"peak RSS ratio {args.repeat}x / 1x: {rows[1] / rows[0]:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
