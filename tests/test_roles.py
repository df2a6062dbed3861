"""Role inference on real text: speakers and turns found where they are, prose left alone."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from gamelog.errors import GamelogError
from gamelog.formats.preference import transcript_turns
from gamelog.roles import RoleOptions, assign, detect, perspectives
from gamelog.roles.evaluate import Score, false_dialogue_rate, play_script_truth, predict, strip_labels

from conftest import SHARED, shared

KNOWN_LINE = re.compile(r"(?m)^(Human|Assistant|User|Q|A):")


def test_tinyshakespeare_every_speech_with_its_speaker():
    text = (SHARED / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    truth = play_script_truth(text)
    score = Score()
    score.add(text, truth, [(n, c, 0) for n, c, _ in predict(text, RoleOptions())])
    assert len(truth) > 7000 and score.exact == len(truth)


def test_tinyshakespeare_turns_from_layout_alone():
    text = (SHARED / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    stripped = strip_labels(text)
    truth = [(None, c, 0) for _, c, _ in play_script_truth(text)]
    score = Score()
    score.add(stripped, truth, [(None, c, 0) for _, c, _ in predict(stripped, RoleOptions(turn_separator="\\n\\n"))])
    assert score.f1 == 1.0


@pytest.fixture(scope="module")
def hh():
    """(original transcript, turns as the hh-rlhf converter parses them) for every convertible record."""
    with gzip.open(shared("preference/harmless-base_test.jsonl.gz"), "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    dialogues = []
    for record in records:
        if record["chosen"].rstrip().endswith("Assistant:"):
            continue  # an empty last answer: the converter rejects these records
        turns = transcript_turns(record["chosen"], "chosen")
        dialogues.append((record["chosen"], [("Human" if t["player"] == 1 else "Assistant", t["content"], t["player"]) for t in turns]))
    return dialogues


def test_hh_transcripts_recovered_exactly(hh):
    assert len(hh) > 2300
    for text, dialogue in hh:
        got = [(n, c.strip(), p) for n, c, p in predict(text, RoleOptions())]
        assert got == [(n, c.strip(), p) for n, c, p in dialogue], text[:300]


def test_hh_one_line_per_turn(hh):
    checked = 0
    for _, dialogue in hh:
        if any(KNOWN_LINE.search(content) for _, content, _ in dialogue):
            continue  # a turn holding a line 'Assistant: ...' is ambiguous once turns are joined by single newlines
        text = "\n".join(f"{name}: {content}" for name, content, _ in dialogue)
        got = [(n, c.strip(), p) for n, c, p in predict(text, RoleOptions())]
        assert got == [(n, c.strip(), p) for n, c, p in dialogue], text[:300]
        checked += 1
    assert checked > 0.97 * len(hh)


def test_eou_separated_dialogues_exact_and_alternating(hh):
    options = RoleOptions(turn_separator=" __eou__ ")
    for _, dialogue in hh:
        text = " __eou__ ".join(content for _, content, _ in dialogue)
        got = predict(text, options)
        assert [c.strip() for _, c, _ in got] == [c.strip() for _, c, _ in dialogue]
        assert [p for _, _, p in got] == [1 + k % 2 for k in range(len(dialogue))]


@pytest.mark.parametrize("name, documents", [
    ("wiki", lambda: [l for l in (SHARED / "text/wiki_demo.txt").read_text(encoding="utf-8").split("\n") if l.strip()]),
    ("c4", lambda: [json.loads(l)["text"] for l in (SHARED / "text/c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]),
    ("alice", lambda: [b for b in (SHARED / "text/pg11_alice_11-0.txt").read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n") if b.strip()]),
])
def test_prose_is_not_split_into_fake_dialogues(name, documents):
    assert false_dialogue_rate(documents(), RoleOptions()) < 0.02


def test_faq_questions_and_answers():
    text = "How do I reset my password?\nOpen Settings and choose Reset.\nIt takes a minute.\nCan I change my email?\nYes, under Account."
    turns = assign(detect(text, RoleOptions()), None)
    assert [(t["player"], t["content"]) for t in turns] == [
        (1, "How do I reset my password?"), (2, "Open Settings and choose Reset.\nIt takes a minute."),
        (1, "Can I change my email?"), (2, "Yes, under Account."),
    ]


def test_player_policies_for_many_speakers():
    text = "ANNA:\nWhere were you?\n\nBEN:\nOut.\n\nCARL:\nHe was with me.\n\nBEN:\nI was."
    found = detect(text, RoleOptions())
    assert [t["player"] for t in assign(found, None)] == [1, 2, 1, 2]  # BEN responds most
    assert [t["player"] for t in assign(found, "CARL")] == [1, 1, 2, 1]
    views = perspectives(found, RoleOptions(perspectives="all"))
    assert [name for name, _ in views] == ["ANNA", "BEN", "CARL"]


def test_convert_transcript_and_infer_roles(tmp_path, run):
    play = tmp_path / "play.txt"
    play.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n", encoding="utf-8")
    (episode,) = run(play, format="transcript", split="file").episodes
    assert [(t["name"], t["player"]) for t in episode["turns"]] == [("First Citizen", 1), ("All", 2)]
    assert episode["meta"]["inferred_by"] == ["speaker_label", "speaker_label"] and episode["regime"] == "pretrain"
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "User: hi there\nAssistant: hello!"}) + "\n" + json.dumps({"text": "Just prose: nothing more."}) + "\n")
    result = run(docs, infer_roles=True)
    assert [len(e["turns"]) for e in result.episodes] == [2, 1]
    assert result.episodes[1]["turns"][0]["role"] == "text"


def test_missing_spacy_model_is_a_clear_error():
    with pytest.raises(GamelogError, match="not installed"):
        detect("Is it?\nYes.\nIs it not?\nNo.", RoleOptions(spacy_model="no_such_pipeline_xyz"))
