"""Detectors of dialogue structure in raw text; each returns utterances or None.

An utterance is (speaker name or None, content, how it was found, confidence). A detector
returns None when the text does not have its structure, so prose stays prose: nothing is forced
into turns.

- `speaker_labels`: `NAME:` on its own line after a blank line (play scripts) or at a line start
  (`Human: hi`, `Q: ...`, chat logs). In a play script only stand-alone labels count, so "Why,
  so: ..." inside a speech stays speech; elsewhere an inline label counts when it is a known chat
  label or recurs, so a single "Note: ..." in prose does not start a dialogue.
- `separated`: utterances split by an explicit separator (`__eou__`, a blank line) that
  alternate between two parties.
- `question_answer`: FAQ-style lines that are one question sentence (spaCy's sentence
  segmentation; with a statistical pipeline, also interrogative syntax) followed by answer lines.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

Utterance = tuple[str | None, str, str, float]

KNOWN_LABELS = {
    "human", "user", "assistant", "bot", "ai", "system", "q", "a", "question", "answer",
    "customer", "agent", "interviewer", "interviewee", "host", "guest", "me", "you",
}
# A label: up to four words of letters (first capitalised or all caps), or a known chat label.
LABEL = re.compile(r"^(?P<name>[A-Z][A-Za-z'.\-]*(?:,? +&?[A-Za-z][A-Za-z'.\-]*){0,3}|[a-z]{1,12}):(?P<rest>[ \t].*|)$")
CHEAP_LABEL = re.compile(r"(?m)^[A-Za-z][A-Za-z'.,& \-]{0,40}:")  # any candidate at all? (skips most prose)
MIN_TURNS = 2
MIN_COVERAGE = 0.8  # share of non-blank lines inside detected turns


def speaker_labels(text: str) -> list[Utterance] | None:
    if not CHEAP_LABEL.search(text):
        return None
    lines = text.split("\n")
    candidates = []
    for index, line in enumerate(lines):
        match = LABEL.match(line.rstrip("\r"))
        if match:
            name, rest = match["name"], match["rest"].lstrip()
            rest = rest if rest.strip() else ""
            opens = index == 0 or not lines[index - 1].strip()  # a play-script label follows a blank line
            candidates.append((index, name, rest, opens))
    if not candidates:
        return None
    own_line = Counter(name for _, name, rest, opens in candidates if not rest and opens)
    inline = Counter(name for _, name, rest, _ in candidates if rest)
    known = lambda name: name.lower() in KNOWN_LABELS
    script = len(own_line) >= 2  # a play script: its labels stand alone, so inline "Why, so:" is speech
    if script:
        accepted = lambda name, rest, opens: not rest and opens and (known(name) or name[0].isupper())
    elif sum(c for n, c in inline.items() if known(n)) >= 2:  # a chat log with known labels: only those
        opened = [opens for _, n, rest, opens in candidates if rest and known(n)]
        if sum(opened) >= max(3, 0.75 * len(opened)) and len(opened) > sum(opened):
            # turns set apart by blank lines (as HH-RLHF writes them): a label right under a line is content
            accepted = lambda name, rest, opens: known(name) and opens
        else:
            accepted = lambda name, rest, opens: known(name)
    else:
        accepted = lambda name, rest, opens: known(name) or (name[0].isupper() and bool(rest) and inline[name] >= 2)
    starts = [(i, n, r) for i, n, r, opens in candidates if accepted(n, r, opens)]
    if len(starts) < MIN_TURNS or len({n for _, n, _ in starts}) < 2:
        return None
    utterances, covered = [], 0
    for k, (index, name, rest) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        body = "\n".join([rest, *lines[index + 1 : stop]] if rest else lines[index + 1 : stop]).strip()
        covered += sum(1 for line in lines[index:stop] if line.strip())
        if body:
            strong = name in own_line or name.lower() in KNOWN_LABELS
            utterances.append((name, body, "speaker_label", 0.95 if strong else 0.8))
    total = sum(1 for line in lines if line.strip())
    if len(utterances) < MIN_TURNS or covered < MIN_COVERAGE * total:
        return None
    return utterances


def separated(text: str, separator: str) -> list[Utterance] | None:
    parts = [p.strip() for p in text.split(separator)]
    parts = [p for p in parts if p]
    if len(parts) < MIN_TURNS:
        return None
    return [(None, p, "separator", 0.9) for p in parts]


@lru_cache(maxsize=4)
def pipeline(model: str | None):
    """spaCy: a blank English pipeline with a sentencizer (no download), or an installed model."""
    spacy = _import_spacy(blank_only=model is None)

    if model is None:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp
    try:
        return spacy.load(model)
    except OSError:
        from gamelog.errors import GamelogError

        raise GamelogError(f"spaCy pipeline '{model}' is not installed; install it or leave out --spacy-model to use the built-in rules.") from None


QUESTION_LINE = re.compile(r"(?m)\?[ \t\r]*$")
def _import_spacy(*, blank_only: bool):
    """spaCy's layers import torch when it is installed (seconds); the blank pipeline never uses it.

    So for the blank pipeline torch is hidden while spaCy loads, unless this process already has it.
    """
    import sys

    if not blank_only or "torch" in sys.modules or "spacy" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # makes `import torch` fail fast inside thinc
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy


WH_TAGS = {"WDT", "WP", "WP$", "WRB"}


def _is_question(sentence) -> bool:
    if sentence.text.rstrip().endswith("?"):
        return True
    first = sentence[0] if len(sentence) else None
    return first is not None and bool(first.tag_) and (first.tag_ in WH_TAGS or (first.tag_ == "MD" or first.lemma_ in {"be", "do", "have"}) and first.dep_ == "aux")


def question_answer(text: str, model: str | None = None) -> list[Utterance] | None:
    if model is None and len(QUESTION_LINE.findall(text)) < MIN_TURNS:
        return None  # cheap filter before spaCy: FAQ pages end their questions with '?'
    content = [line.strip() for line in text.split("\n") if line.strip()]
    if model is None and not (content and content[0].endswith("?")):
        return None  # an FAQ opens with a question; prose does not
    # without a statistical model only lines ending in '?' can be questions: parse just those
    candidates = [k for k, line in enumerate(content) if model is not None or line.endswith("?")]
    parsed = dict(zip(candidates, pipeline(model).pipe((content[k] for k in candidates), batch_size=256)))
    utterances: list[Utterance] = []
    for k, line in enumerate(content):
        sentences = list(parsed[k].sents) if k in parsed else []
        if len(sentences) == 1 and len(line) <= 300 and _is_question(sentences[0]):
            utterances.append(("Q", line, "question_answer", 0.85))
        elif utterances and utterances[-1][0] in ("Q", "A"):
            if utterances[-1][0] == "A":
                name, body, how, confidence = utterances[-1]
                utterances[-1] = (name, f"{body}\n{line}", how, confidence)
            else:
                utterances.append(("A", line, "question_answer", 0.85))
        else:
            return None  # text before the first question: prose, not an FAQ
    pairs = sum(1 for k in range(len(utterances) - 1) if utterances[k][0] == "Q" and utterances[k + 1][0] == "A")
    if pairs < MIN_TURNS or any(u[0] == "Q" and (k + 1 == len(utterances) or utterances[k + 1][0] != "A") for k, u in enumerate(utterances)):
        return None
    return utterances
