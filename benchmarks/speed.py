"""End-to-end speed of gamelog's SFT preparation against TRL's, and against the raw tokenizer.

    python benchmarks/speed.py [--conversations 20000]      # make bench runs it

Workload: the conversations of ../shared/data/chat and ../shared/data/instruct as OpenAI
messages (tool calls and results as assistant and user text, since phi-3-mini's template knows
only system/user/assistant), repeated until there are --conversations of them, each made unique
by a number in its first user move. Tokenizer: ../shared/data/tokenizers/phi-3-mini with its own
chat template; seq_len 4096.

- gamelog: `gamelog convert` + `gamelog pack` as whole processes (start-up and imports count).
- TRL: `SFTTrainer._prepare_dataset` with packing=True, packing_strategy="bfd", two processes,
  in a process of its own (imports count too). Skipped, with a note, when TRL is not installed
  (`pip install -e '.[bench]'`).
- LLaMA-Factory: `llamafactory.data.get_dataset` with stage sft, template phi, packing, 2 workers,
  in its own venv (`.venv-llamafactory`, which `make bench` builds; it pins older TRL and
  transformers), with a stand-in for torchaudio, which its data module imports and which does not
  load beside CPU torch. Skipped, with a note, when that venv is missing.
- 1 vs 2 workers: `gamelog pack --workers 1` and `--workers 2` on the same episodes, alternated
  three times, best of each (the machines here are noisy); same bytes? Throughput, measured on ten
  times the workload (`--scale`), where the fixed costs of a command (start-up, loading the
  tokenizer, the last window's rows) are a tenth of the work; on the workload itself too, where
  they are a third of the run with two processes.
- raw tokenizer: `Tokenizer.encode_batch` with offsets on gamelog's rendered texts, in process,
  best of --repeats runs (gamelog's figure is its best run too).
gamelog, TRL and LLaMA-Factory run one after the other --repeats times (default 3); the best and
the median of each are printed, with the ratios of both.
Printed: tokens/s of each, the ratios, packing efficiency, and `gamelog --help` start-up time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TOKENIZER = SHARED / "tokenizers" / "phi-3-mini"
SEQ_LEN = 4096
AS_CHAT = {"system": "system", "user": "user", "context": "user", "tool": "user", "assistant": "assistant", "tool_call": "assistant", "thought": "assistant"}

TRL_SCRIPT = r"""
import json, sys, time
started = time.perf_counter()
from datasets import load_dataset
from transformers import AutoTokenizer
from trl import SFTConfig, SFTTrainer

class Trainer:  # _prepare_dataset reads a few attributes of the trainer; none matter for SFT text
    def __getattr__(self, name):
        return None

tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
dataset = load_dataset("json", data_files=sys.argv[2], split="train")
args = SFTConfig(output_dir=sys.argv[3], packing=True, packing_strategy="bfd", max_length=int(sys.argv[4]), dataset_num_proc=2, report_to=[], use_cpu=True, bf16=False)
trainer = Trainer()
trainer.args = args
packed = SFTTrainer._prepare_dataset(trainer, dataset, tokenizer, args, True, None, "train")
tokens = sum(len(ids) for ids in packed["input_ids"])
print(json.dumps({"seconds": time.perf_counter() - started, "tokens": tokens, "rows": len(packed)}))
"""


LLAMAFACTORY_SCRIPT = r"""
import importlib.machinery, json, sys, time, types
started = time.perf_counter()
stand_in = types.ModuleType("torchaudio")  # imported by LLaMA-Factory's data module; text SFT never calls it, and it does not load beside CPU torch
stand_in.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
sys.modules["torchaudio"] = stand_in
from transformers import AutoTokenizer, Seq2SeqTrainingArguments
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments, ModelArguments

tokenizer_dir, data_dir, out, seq_len = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
data_args = DataArguments(template="phi", dataset="bench", dataset_dir=data_dir, cutoff_len=seq_len, packing=True, preprocessing_num_workers=2, overwrite_cache=True)
training_args = Seq2SeqTrainingArguments(output_dir=out, do_train=True, use_cpu=True, report_to=[])
template = get_template_and_fix_tokenizer(tokenizer, data_args)
dataset = get_dataset(template, ModelArguments(model_name_or_path=tokenizer_dir), data_args, training_args, stage="sft", tokenizer=tokenizer)["train_dataset"]
real, width = 0, 0
for ids in dataset["input_ids"]:  # packed rows are padded at the end to cutoff + 1, with attention 1 on the padding
    width, n = max(width, len(ids)), len(ids)
    while n and ids[n - 1] == tokenizer.pad_token_id:
        n -= 1
    real += n
print(json.dumps({"seconds": time.perf_counter() - started, "tokens": real, "rows": len(dataset), "width": width}))
"""
LLAMAFACTORY_PYTHON = Path(os.environ.get("LLAMAFACTORY_PYTHON", ROOT / ".venv-llamafactory" / "bin" / "python"))


def machine() -> str:
    """The line each benchmark starts with: what ran it."""
    return f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; seq_len {SEQ_LEN}"


# A child's peak RSS as the kernel reports it (wait4) is at least its parent's peak: exec records
# the peak of the address space it replaces, and subprocess starts children with vfork, sharing the
# parent's until then. So a benchmark that built its workload in memory floored every figure at its
# own peak (memory.py's convert at 160-172 MiB, its parent's, against 122-145 MiB measured alone).
# Commands therefore start from this small process, which forks, times and waits for them and writes
# their peak (the largest of them and the children they waited for) and seconds to a file.
STARTER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as measures:
    measures.write(f"{usage.ru_maxrss} {time.perf_counter() - started} {usage.ru_utime + usage.ru_stime}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def measured(command: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """Run a command: its output and exit status, its peak RSS in MiB (the largest of it and the
    children it waited for, not floored at this process's), its seconds (the starter's own start
    excluded) and its CPU seconds (user and system, its own and its children's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as measures:
        done = subprocess.run([sys.executable, "-c", STARTER, measures.name, *command], stdout=out, stderr=err, env=env)
        out.seek(0)
        err.seek(0)
        kib, seconds, cpu = (measures.read() or "0 0 0").split()
        return subprocess.CompletedProcess(command, done.returncode, out.read().decode(), err.read().decode()), int(kib) / 1024, float(seconds), float(cpu)


def gamelog(*args: str) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """One gamelog command: its output, peak RSS (MiB), seconds and CPU seconds."""
    done, peak, seconds, cpu = measured([sys.executable, "-m", "gamelog.cli", *args])
    if done.returncode != 0:
        raise SystemExit(f"gamelog {args[0]} failed: {done.stderr[-800:]}")
    return done, peak, seconds, cpu


def workload(folder: Path, conversations: int) -> Path:
    """OpenAI-messages JSONL of unique conversations from the shared chat and instruct files."""
    import pyarrow.parquet as pq

    gamelog("convert", str(SHARED / "chat"), str(SHARED / "instruct"), "--dedup", "none", "--out", str(folder / "source"))
    base = []
    for file in sorted((folder / "source").glob("episodes-*.parquet")):
        for row in pq.read_table(file, columns=["turns"]).to_pylist():
            base.append([{"role": AS_CHAT[t["role"]], "content": t["content"]} for t in row["turns"]])
    path = folder / "workload.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for k in range(conversations):
            messages = [dict(m) for m in base[k % len(base)]]
            first = next(m for m in messages if m["role"] == "user")
            first["content"] = f"[{k}] {first['content']}"
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


def run_gamelog(path: Path, folder: Path) -> dict:
    _, convert_peak, convert, convert_cpu = gamelog("convert", str(path), "--dedup", "none", "--out", str(folder / "episodes"))
    _, pack_peak, pack, pack_cpu = gamelog("pack", str(folder / "episodes"), "--tokenizer", str(TOKENIZER), "--seq-len", str(SEQ_LEN), "--out", str(folder / "shards"))
    manifest = json.loads((folder / "shards" / "manifest.json").read_text())
    counts = manifest["counts"]
    return {"seconds": convert + pack, "convert": convert, "cpu": convert_cpu + pack_cpu, "convert_cpu": convert_cpu, "tokens": counts["tokens_total"], "rows": counts["rows"], "truncated": counts["tokens_truncated"], "dropped": counts["tokens_dropped"], "peak": max(convert_peak, pack_peak)}


def cold_cache(folder: Path) -> dict:
    """An environment with an empty datasets cache: a repeated run must not reuse the last one's
    Arrow files and map results (the workload is unique so that no cache helps any tool)."""
    cache = Path(tempfile.mkdtemp(dir=folder, prefix="hf-datasets-"))
    return os.environ | {"HF_DATASETS_CACHE": str(cache)}


def run_trl(path: Path, folder: Path) -> dict | None:
    try:
        import trl  # noqa: F401
    except ImportError:
        return None
    done, peak, _, _ = measured([sys.executable, "-c", TRL_SCRIPT, str(TOKENIZER), str(path), str(folder / "trl"), str(SEQ_LEN)], env=cold_cache(folder))
    if done.returncode != 0:
        print(f"TRL failed: {done.stderr[-800:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"peak": peak}


def run_llamafactory(path: Path, folder: Path) -> dict | None:
    """LLaMA-Factory's SFT preparation (template phi, packing, 2 workers) in its own venv: it pins older TRL and transformers."""
    if not LLAMAFACTORY_PYTHON.exists():
        return None
    info = {"bench": {"file_name": str(path), "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    done, peak, _, _ = measured([str(LLAMAFACTORY_PYTHON), "-c", LLAMAFACTORY_SCRIPT, str(TOKENIZER), str(folder), str(folder / "llamafactory"), str(SEQ_LEN)], env=cold_cache(folder))
    if done.returncode != 0:
        print(f"LLaMA-Factory failed: {done.stderr[-800:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"peak": peak}


def raw_tokenizer(folder: Path, repeats: int = 3) -> float:
    """Tokens/s of encode_batch (with offsets) on the texts gamelog rendered, in process: the best
    of `repeats` runs, as gamelog's figure is the best of its runs."""
    import pyarrow.parquet as pq

    from gamelog.pack import make_renderer
    from gamelog.pack.tokenizer import load_tokenizer

    tok = load_tokenizer(str(TOKENIZER))
    render = make_renderer(tok, "jinja", "auto")
    texts = [render(row).text for f in sorted((folder / "episodes").glob("episodes-*.parquet")) for row in pq.read_table(f).to_pylist()]
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        tokens = sum(len(e.ids) for e in tok.tokenizer.encode_batch(texts, add_special_tokens=False))
        best = max(best, tokens / (time.perf_counter() - started))
    return best


def workers(episodes: Path, repeats: int = 3) -> tuple[float, float, bool]:
    """Best seconds of `gamelog pack` with 1 and with 2 workers, alternated `repeats` times (this machine is noisy), and whether the outputs are the same bytes."""
    seconds: dict[int, list[float]] = {1: [], 2: []}
    outputs = {}
    for _ in range(repeats):
        for count in (1, 2):
            out = episodes.parent / f"shards-{count}-workers"
            seconds[count].append(gamelog("pack", str(episodes), "--tokenizer", str(TOKENIZER), "--seq-len", str(SEQ_LEN), "--workers", str(count), "--out", str(out))[2])
            outputs[count] = {f.name: f.read_bytes() for f in sorted(out.iterdir())}
    return min(seconds[1]), min(seconds[2]), outputs[1] == outputs[2]


def scaled_episodes(folder: Path, conversations: int) -> Path:
    """Episodes of a workload of this many conversations, in a folder of their own."""
    folder.mkdir()
    gamelog("convert", str(workload(folder, conversations)), "--dedup", "none", "--out", str(folder / "episodes"))
    return folder / "episodes"


def startup() -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gamelog.cli", "--help"], capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def rounds(path: Path, folder: Path, repeats: int) -> tuple[list[dict], list[dict], list[dict]]:
    """gamelog, TRL and LLaMA-Factory, one after the other, `repeats` times (this machine is noisy)."""
    ours, trl, factory = [], [], []
    for _ in range(repeats):
        ours.append(run_gamelog(path, folder))
        if (theirs := run_trl(path, folder)) is not None:
            trl.append(theirs)
        if (theirs := run_llamafactory(path, folder)) is not None:
            factory.append(theirs)
    return ours, trl, factory


def spread(runs: list[dict]) -> tuple[dict, float, float]:
    """The fastest run, its seconds and the median seconds."""
    seconds = sorted(r["seconds"] for r in runs)
    return min(runs, key=lambda r: r["seconds"]), seconds[0], statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each tool; best and median are printed")
    parser.add_argument("--scale", type=int, default=10, help="1 vs 2 workers is measured on this many times the workload too (0: not)")
    args = parser.parse_args()
    n = args.conversations
    print(f"{machine()}; workload {n:,} conversations; {args.repeats} alternated runs of each tool")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = workload(folder, n)
        ours_runs, trl_runs, factory_runs = rounds(path, folder, args.repeats)
        ours, best, median = spread(ours_runs)
        rate = ours["tokens"] / best
        print(f"gamelog convert+pack: {ours['tokens']:,} tokens; best {best:.2f} s = {rate:,.0f} tokens/s ({n / best:,.0f} conversations/s), median {median:.2f} s (best run: convert {ours['convert']:.2f} s, pack {best - ours['convert']:.2f} s); efficiency {ours['tokens'] / (ours['rows'] * SEQ_LEN):.2%}; truncated {ours['truncated']}, dropped {ours['dropped']}")
        if not trl_runs:
            print("TRL: not installed here (pip install -e '.[bench]'); no ratio")
        else:
            theirs, trl_best, trl_median = spread(trl_runs)
            print(f"TRL _prepare_dataset (bfd): {theirs['tokens']:,} tokens; best {trl_best:.2f} s = {theirs['tokens'] / trl_best:,.0f} tokens/s, median {trl_median:.2f} s; efficiency {theirs['tokens'] / (theirs['rows'] * SEQ_LEN):.2%}")
            print(f"gamelog / TRL tokens/s: best {rate / (theirs['tokens'] / trl_best):.2f}x, median {(ours['tokens'] / median) / (theirs['tokens'] / trl_median):.2f}x (target >= 3x)")
        if not factory_runs:
            print(f"LLaMA-Factory: no {LLAMAFACTORY_PYTHON} (make bench builds .venv-llamafactory); no ratio")
        else:
            factory, lf_best, lf_median = spread(factory_runs)
            print(f"LLaMA-Factory get_dataset (sft, phi, packing, 2 workers): best {lf_best:.2f} s = {n / lf_best:,.0f} conversations/s, median {lf_median:.2f} s; {factory['tokens']:,} tokens, efficiency {factory['tokens'] / (factory['rows'] * factory['width']):.2%} (rows of {factory['width']}); tokens it lost against gamelog's: {1 - factory['tokens'] / ours['tokens']:.2%}")
            print(f"gamelog / LLaMA-Factory conversations/s: best {lf_best / best:.2f}x, median {lf_median / median:.2f}x (target >= 2x)")
        peaks = [f"gamelog {max(r['peak'] for r in ours_runs):,.0f} MiB"] + [f"{name} {max(r['peak'] for r in runs):,.0f} MiB" for name, runs in (("TRL", trl_runs), ("LLaMA-Factory", factory_runs)) if runs]
        print(f"peak RSS of the largest process (it or a child it waited for), highest of the runs: {', '.join(peaks)}")
        if args.scale:
            one, two, same = workers(scaled_episodes(folder / "scaled", args.scale * n))
            print(f"gamelog pack, {args.scale}x the workload, best of 3 alternated runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s: {one / two:.2f}x (target >= 1.7x); same bytes: {same}")
        one, two, same = workers(folder / "episodes")
        print(f"gamelog pack, the workload, best of 3 alternated runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s: {one / two:.2f}x (fixed costs included); same bytes: {same}")
        raw = raw_tokenizer(folder, args.repeats)
        print(f"raw encode_batch (best of {args.repeats}): {raw:,.0f} tokens/s; gamelog (best run) / raw: {rate / raw:.2f} (target >= 0.75)")
        cores, cpu = os.cpu_count() or 1, ours["cpu"]
        print(f"gamelog's CPU in its best run: convert {ours['convert_cpu']:.2f} + pack {cpu - ours['convert_cpu']:.2f} = {cpu:.2f} CPU-s, the cores busy {cpu / (cores * best):.0%} of its {best:.2f} s; with every core busy throughout it would take {cpu / cores:.2f} s, a raw ratio of {ours['tokens'] / (cpu / cores) / raw:.2f}")
    print(f"gamelog --help start-up: {startup():.3f} s (target < 0.3 s)")


if __name__ == "__main__":
    main()
