"""Batches encoded one distinct word at a time (SentencePiece-style BPE) get the tokenizer's own ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from gamelog.convert import ConvertOptions, convert
from gamelog.pack import make_renderer
from gamelog.pack.offsets import Encoder, Tokens
from gamelog.pack.tokenizer import load_tokenizer

from conftest import shared

PHI3 = shared("tokenizers/phi-3-mini")
# runs of spaces (indentation), a `▁` written in the text, byte-fallback characters, whitespace the
# normalizer keeps, and added tokens between words
EDGES = ["", " ", "    four", "a  b   c    d", "def f():\n    return  1\n\n\tx", "▁▁x ▁ y▁", "é日本🎉 ü  🎉🎉", "\u3000\u2028 z", "x<|end|>  y", "<|user|>\n\nHi  there<|end|>"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    """Every shared record of every kind, as episodes."""
    out = tmp_path_factory.mktemp("words")
    convert([shared(kind) for kind in ("chat", "instruct", "qa", "preference", "text")], out=out, options=ConvertOptions(dedup="none"))
    return [row for f in sorted(out.glob("episodes-*.parquet")) for row in pq.read_table(f).to_pylist()]


def _theirs(tokenizer, texts: list[str]) -> Tokens:
    """The tokenizer's own encodings, its normalizer included."""
    return Tokens.from_encodings(tokenizer.encode_batch(texts, add_special_tokens=False))


@pytest.mark.parametrize("template", ["jinja", "chatml", "llama-3"])
def test_batches_encoded_one_distinct_word_at_a_time_are_the_tokenizers_own_ids(rows, template):
    tok = load_tokenizer(PHI3)
    render = make_renderer(tok, template, "auto")
    texts = [render(row).text for row in rows] + EDGES
    encoder = Encoder(tok.tokenizer)
    assert encoder.words is not None
    batches = [texts[i : i + 512] for i in range(0, len(texts), 512)]
    for batch in batches:
        ours, theirs = encoder.encode(batch), _theirs(encoder.tokenizer, batch)
        assert np.array_equal(ours.lengths, theirs.lengths) and np.array_equal(ours.ids, theirs.ids)
    assert encoder.by_words == len(batches)  # not one batch was encoded whole


def test_a_batch_that_does_not_fit_is_encoded_whole_with_the_same_ids():
    encoder = Encoder(load_tokenizer(PHI3).tokenizer)
    every_added = "".join(f"x {content} y" for content in encoder.spelling.by_content)  # no added token is free to stand between words
    for batch in (["a NUL \x00 inside", "b"], ["a \x01 inside"], [every_added, "more words here"]):
        ours, theirs = encoder.encode(batch), _theirs(encoder.tokenizer, batch)
        assert np.array_equal(ours.lengths, theirs.lengths) and np.array_equal(ours.ids, theirs.ids)
    assert encoder.by_words == 0 and encoder.derived == 3


def _changed(change) -> Tokenizer:
    """Phi-3-mini's tokenizer with its tokenizer.json changed."""
    spec = json.loads((Path(PHI3) / "tokenizer.json").read_text(encoding="utf-8"))
    change(spec)
    return Tokenizer.from_str(json.dumps(spec))


def test_the_scheme_holds_only_where_no_merge_can_join_words():
    def inner_lead(spec):  # a token with a `▁` after another character: a merge could join two words
        spec["model"]["vocab"]["a▁b"] = max(spec["model"]["vocab"].values()) + 1

    def ignore_merges(spec):  # a word found whole in the vocabulary skips its merges: words and pieces could differ
        spec["model"]["ignore_merges"] = True

    assert Encoder(_changed(lambda spec: None)).words is not None
    for change in (inner_lead, ignore_merges):
        encoder = Encoder(_changed(change))
        assert encoder.normalizer is not None and encoder.words is None


_ENCODER: list[Encoder] = []


def _phi3_encoder() -> Encoder:
    """One encoder for every example (loading the tokenizer takes longer than an example)."""
    if not _ENCODER:
        _ENCODER.append(Encoder(load_tokenizer(PHI3).tokenizer))
    return _ENCODER[0]


# spaces and runs of them, `▁` written in the text, whitespace the tokenizer keeps or an added
# token swallows, byte-fallback characters, letters, digits, and added tokens with what may follow
ALPHABET = st.sampled_from([" ", "  ", "▁", "▁▁", "\n", "\t", "\r\n", "\u3000", "a", "the", "ing", "7", "é", "日本", "🎉", ".", "<", "|", "<0x0A>", "<|end|>", "<|user|>", "<|endoftext|>", "<s>"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.lists(ALPHABET, max_size=40).map("".join), min_size=1, max_size=6))
def test_any_text_encoded_one_distinct_word_at_a_time_gets_the_tokenizers_own_ids(texts):
    encoder = _phi3_encoder()
    before = encoder.by_words
    ours, theirs = encoder.encode(texts), _theirs(encoder.tokenizer, texts)
    assert np.array_equal(ours.lengths, theirs.lengths) and np.array_equal(ours.ids, theirs.ids)
    assert encoder.by_words == before + 1
