"""Offsets worked out from the ids are the tokenizer's own offsets, or the tokenizer is asked."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from gamelog.convert import ConvertOptions, convert
from gamelog.pack import choose_template, make_renderer
from gamelog.pack.offsets import Encoder, Tokens
from gamelog.pack.tokenizer import load_tokenizer

from conftest import shared

EDGES = ["", " ", "  lead", "\ttab\n", "a\u00a0b", "x<|end|> \n y", "<|end|>\n\n\n<|user|>", "é日本🎉 ü", "<|endoftext|><|endoftext|>", "trail   ", "<unk> and <0x0A> as text", "<|assistant|>\n\nHi", "x<|end|>\x1c y", "<|end|>\u3000\u2028z"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict[str, list[str]]:
    """Every shared chat, instruct and preference conversation, rendered for each tokenizer, plus edge cases."""
    out = tmp_path_factory.mktemp("offsets")
    convert([shared("chat"), shared("instruct"), shared("preference")], out=out, options=ConvertOptions())
    rows = [row for f in sorted(out.glob("episodes-*.parquet")) for row in pq.read_table(f).to_pylist()]
    rendered = {}
    for name in ("phi-3-mini", "phi-2", "gpt2"):
        tok = load_tokenizer(shared(f"tokenizers/{name}"))
        render = make_renderer(tok, choose_template(tok, "auto"), "auto")
        rendered[name] = [render(row).text for row in rows] + EDGES
    return rendered


def _theirs(tokenizer, texts: list[str]) -> Tokens:
    return Tokens.from_encodings(tokenizer.encode_batch(texts, add_special_tokens=False))


@pytest.mark.parametrize("name", ["phi-3-mini", "phi-2", "gpt2"])
def test_derived_offsets_are_the_tokenizers_own(texts, name):
    tokenizer = load_tokenizer(shared(f"tokenizers/{name}")).tokenizer
    encoder = Encoder(tokenizer)
    assert encoder.spelling is not None  # byte-level and SentencePiece-style BPE are understood
    batches = [texts[name][i : i + 512] for i in range(0, len(texts[name]), 512)]
    for batch in batches:
        ours, theirs = encoder.encode(batch), _theirs(tokenizer, batch)
        assert np.array_equal(ours.lengths, theirs.lengths) and np.array_equal(ours.ids, theirs.ids)
        assert np.array_equal(ours.offsets, theirs.offsets)
    assert encoder.derived == len(batches) and encoder.asked == 0  # not one batch fell back


def test_a_batch_that_does_not_check_out_is_encoded_by_the_tokenizer():
    """A SentencePiece-style tokenizer without byte fallback: an unknown character becomes <unk>, which spells nothing of it."""
    from tokenizers import Tokenizer, models, normalizers

    tokenizer = Tokenizer(models.BPE(vocab={"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4}, merges=[("▁", "a")], unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    encoder = Encoder(tokenizer)
    assert encoder.spelling is not None
    batch = ["a b", "a c b"]
    ours, theirs = encoder.encode(batch), _theirs(tokenizer, batch)
    assert encoder.asked == 0  # the ids are cut at the added tokens; offsets are worked out when asked
    assert np.array_equal(ours.offsets, theirs.offsets) and np.array_equal(ours.ids, theirs.ids)
    assert encoder.asked == 1  # asked for, they did not check out: the tokenizer's


def test_sentencepiece_texts_are_normalized_here_and_the_tokenizer_keeps_its_normalizer(texts):
    tokenizer = load_tokenizer(shared("tokenizers/phi-3-mini")).tokenizer
    encoder = Encoder(tokenizer)
    assert encoder.normalizer is not None  # the tokenizer runs without it while this encoder encodes
    encoder.encode(texts["phi-3-mini"][:64])
    assert tokenizer.normalizer is not None
    assert tokenizer.encode("a  b", add_special_tokens=False).tokens == ["▁a", "▁", "▁b"]


def test_an_encoder_whose_normalizing_differs_leaves_it_to_the_tokenizer(texts, monkeypatch):
    """The start-up probe compares both ways; a difference keeps the tokenizer's own normalizer."""
    from gamelog.pack.offsets import Spelling

    real = Spelling.normalized
    monkeypatch.setattr(Spelling, "normalized", lambda self, pieces: [t.replace("▁▁", "▁") for t in real(self, pieces)])
    tokenizer = load_tokenizer(shared("tokenizers/phi-3-mini")).tokenizer
    encoder = Encoder(tokenizer)
    assert encoder.normalizer is None
    batch = texts["phi-3-mini"][:64]
    ours, theirs = encoder.encode(batch), _theirs(tokenizer, batch)
    assert np.array_equal(ours.ids, theirs.ids) and np.array_equal(ours.offsets, theirs.offsets)


def test_tokenizers_of_other_families_are_asked_for_offsets():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    encoder = Encoder(tokenizer)
    assert encoder.spelling is None
    ours = encoder.encode(["AB ab", "ba"])
    theirs = _theirs(tokenizer, ["AB ab", "ba"])
    assert np.array_equal(ours.ids, theirs.ids) and np.array_equal(ours.offsets, theirs.offsets)
