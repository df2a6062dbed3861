"""How well gamelog finds speakers and turns in raw text, on real data with known speakers.

    python benchmarks/roles.py

Prints turn-boundary F1, exact utterances and player accuracy for:
- tinyshakespeare with its speaker labels, and with them removed (turns from layout alone);
- hh-rlhf harmless-base transcripts, labels kept (`Human:`/`Assistant:`) and stripped
  (utterances joined by ` __eou__ `, inferred with --turn-separator);
- the ShareGPT dialogues of ../shared/data/chat rendered the same two ways;
and the false-dialogue rate on prose (wiki_demo lines, c4_demo documents, Alice paragraphs),
and the throughput of role inference on prose against reading it with no inference.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from gamelog.formats.preference import transcript_turns  # noqa: E402
from gamelog.roles import RoleOptions  # noqa: E402
from gamelog.roles.evaluate import Score, false_dialogue_rate, play_script_truth, predict, strip_labels  # noqa: E402

EOU = " __eou__ "


def hh_dialogues() -> list[tuple[str, list[tuple[str, str, int]]]]:
    """(the original transcript, its turns as the hh-rlhf converter parses them)."""
    with gzip.open(SHARED / "preference" / "harmless-base_test.jsonl.gz", "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    dialogues = []
    for record in records:
        try:
            turns = transcript_turns(record["chosen"], "chosen")
        except Exception:  # the few transcripts gamelog rejects as data (an empty last turn)
            continue
        dialogues.append((record["chosen"], [("Human" if t["player"] == 1 else "Assistant", t["content"], t["player"]) for t in turns]))
    return dialogues


def chat_dialogues() -> list[list[tuple[str, str, int]]]:
    dialogues = []
    for name in ("dummy_conversation.json", "dummy_conversation_with_system.json"):
        for record in json.loads((SHARED / "chat" / name).read_text(encoding="utf-8")):
            turns = [("User" if m["from"] == "human" else "Assistant", m["value"].strip(), 1 if m["from"] == "human" else 2) for m in record["conversations"]]
            if turns and all(t[1] for t in turns):
                dialogues.append(turns)
    return dialogues


def labelled(dialogue) -> str:
    return "\n".join(f"{name}: {content}" for name, content, _ in dialogue)


def unlabelled(dialogue) -> str:
    return EOU.join(content for _, content, _ in dialogue)


def score(dialogues, render, options: RoleOptions, names: bool) -> Score:
    result = Score()
    for dialogue in dialogues:
        truth = dialogue if names else [(None, c, p) for _, c, p in dialogue]
        text = render(dialogue)
        result.add(text, truth, predict(text, options))
    return result


def line(label: str, s: Score) -> str:
    return (
        f"{label:48s} docs {s.documents:6,}  turns {s.truth:7,}  boundary F1 {s.f1:.4f}  "
        f"exact {s.exact / max(1, s.truth):7.2%}  players {s.player_accuracy:7.2%}  docs all exact {s.documents_exact / max(1, s.documents):7.2%}"
    )


def prose() -> dict[str, list[str]]:
    wiki = [l for l in (SHARED / "text" / "wiki_demo.txt").read_text(encoding="utf-8").split("\n") if l.strip()]
    c4 = [json.loads(l)["text"] for l in (SHARED / "text" / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    alice = [b for b in (SHARED / "text" / "pg11_alice_11-0.txt").read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n") if b.strip()]
    return {"wiki_demo (lines)": wiki, "c4_demo (documents)": c4, "alice (paragraphs)": alice}


def throughput(documents: list[str]) -> tuple[float, float]:
    """Conversion time of the prose documents as plain text and with role inference (spaCy warm)."""
    from gamelog.formats.common import Context
    from gamelog.formats.text import convert_text
    from gamelog.roles.transcript import convert_transcript

    timings = []
    for convert in (convert_text, convert_transcript):
        ctx = Context(source="bench", location="")
        for text in documents[:50]:  # warm-up: imports, spaCy's vocabulary
            convert({"text": text}, ctx)
        started = time.perf_counter()
        for _ in range(3):
            for text in documents:
                convert({"text": text}, ctx)
        timings.append(time.perf_counter() - started)
    return timings[0], timings[1]


def end_to_end(times: int = 10) -> tuple[float, float]:
    """Whole `gamelog convert` processes on the prose files repeated `times` times, without and with --infer-roles."""
    import shutil
    import subprocess
    import tempfile

    timings = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "prose"
        folder.mkdir()
        for name in ("wiki_demo.txt", "c4_demo.jsonl", "pg11_alice_11-0.txt"):
            for k in range(times):
                shutil.copy(SHARED / "text" / name, folder / f"{k}-{name}")
        for extra in ([], ["--infer-roles"]):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "gamelog.cli", "convert", str(folder), "--dedup", "none", "--out", f"{tmp}/o", *extra], check=True, capture_output=True)
            timings.append(time.perf_counter() - started)
    return timings[0], timings[1]


def main() -> None:
    plain = RoleOptions()
    shakespeare = (SHARED / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    truth = play_script_truth(shakespeare)
    with_labels = Score()
    with_labels.add(shakespeare, truth, [(n, c, 0) for n, c, _ in predict(shakespeare, plain)])
    print(line("tinyshakespeare, labels kept", with_labels))
    without = Score()
    stripped = strip_labels(shakespeare)
    without.add(stripped, [(None, c, 0) for _, c, _ in truth], [(None, c, 0) for _, c, _ in predict(stripped, RoleOptions(turn_separator="\\n\\n"))])
    print(line("tinyshakespeare, labels removed (layout)", without) + "  (players: multi-party, not scored)")
    hh = hh_dialogues()
    original = {id(turns): text for text, turns in hh}
    hh_turns = [turns for _, turns in hh]
    print(line("hh-rlhf harmless-base, transcripts as given", score(hh_turns, lambda d: original[id(d)], plain, True)))
    print(line("hh-rlhf harmless-base, one 'Name: text' line per turn", score(hh_turns, labelled, plain, True)))
    print(line("hh-rlhf harmless-base, __eou__ separated", score(hh_turns, unlabelled, RoleOptions(turn_separator=EOU), False)))
    chats = chat_dialogues()
    print(line("shared chat dialogues, labels kept", score(chats, labelled, plain, True)))
    print(line("shared chat dialogues, __eou__ separated", score(chats, unlabelled, RoleOptions(turn_separator=EOU), False)))
    everything = []
    for name, documents in prose().items():
        everything += documents
        print(f"false-dialogue rate, {name:28s} {false_dialogue_rate(documents, plain):7.2%} of {len(documents):,} documents (target < 2%)")
    base, inferred = throughput(everything)
    print(f"conversion of prose, per record: inference {inferred:.3f} s vs plain text {base:.3f} s: ratio {inferred / base:.2f}")
    base, inferred = end_to_end()
    print(f"gamelog convert on the prose files x10: --infer-roles {inferred:.2f} s vs plain {base:.2f} s: ratio {inferred / base:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
