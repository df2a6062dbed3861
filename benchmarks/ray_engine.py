"""The Ray engine against the local engine on the speed workload: fill lost to block packing, and time.

    python benchmarks/ray_engine.py [--conversations 20000] [--block 5000]

Both engines run as whole `gamelog convert` and `gamelog pack` commands on benchmarks/speed.py's
workload (phi-3-mini, seq_len 4096). The local engine packs best-fit decreasing over windows of
20,000 episodes (its default); the Ray engine packs blocks of --block episodes, one Ray task each,
so that blocks spread over the cluster. Printed: tokens, rows, efficiency of each, the difference in
percentage points (target < 0.5), and the seconds of each command. On one machine Ray's start-up
dominates small runs: the figure that matters here is the fill.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from speed import SEQ_LEN, TOKENIZER, machine, workload  # noqa: E402


def timed(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gamelog.cli", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=5_000)
    args = parser.parse_args()
    print(f"{machine()}; workload {args.conversations:,} conversations")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = workload(folder, args.conversations)
        manifests = {}
        for engine, window in (("local", 20_000), ("ray", args.block)):
            convert = timed("convert", str(path), "--dedup", "none", "--engine", engine, "--out", str(folder / f"episodes-{engine}"))
            pack = timed("pack", str(folder / f"episodes-{engine}"), "--tokenizer", str(TOKENIZER), "--seq-len", str(SEQ_LEN), "--window", str(window), "--engine", engine, "--out", str(folder / f"shards-{engine}"))
            manifest = json.loads((folder / f"shards-{engine}" / "manifest.json").read_text())
            manifests[engine] = manifest
            counts = manifest["counts"]
            print(f"{engine:>5} (window {window:,}): convert {convert:5.1f} s, pack {pack:5.1f} s; {counts['tokens_total']:,} tokens in {counts['rows']:,} rows, efficiency {manifest['efficiency']:.4%}")
        same = manifests["local"]["counts"]["tokens_total"] == manifests["ray"]["counts"]["tokens_total"]
        lost = (manifests["local"]["efficiency"] - manifests["ray"]["efficiency"]) * 100
        print(f"same tokens: {same}; fill lost to blocks of {args.block:,}: {lost:.3f} percentage points (target < 0.5)")


if __name__ == "__main__":
    main()
