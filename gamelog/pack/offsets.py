"""Encode texts to token ids and character offsets, the offsets worked out from the ids when we can.

Asking the tokenizer for offsets (`encode_batch`) costs a third more than ids alone
(`encode_batch_fast`) and then a Python list of tuples per text. For the two families of BPE
tokenizers that LLMs use, the offsets follow from the ids and the text:

- byte-level BPE (GPT-2, Phi-2, Llama 3, Qwen): no normalizer, and the tokens of a piece of text
  spell its UTF-8 bytes (through the byte-to-character table of the ByteLevel pre-tokenizer);
- SentencePiece-style BPE (Llama 2, Mistral, Phi-3): the normalizer writes spaces as `▁` and
  prepends one `▁` to each piece, and byte-fallback tokens `<0xNN>` spell single bytes; the
  prepended `▁` belongs to the piece's first character.

Added (special) tokens cut the text into pieces first; they are found with one regex (longest
first, as the tokenizer matches them), with the whitespace that a right-stripping token swallows.
A token's offsets are the characters of its first and last byte, as the tokenizer gives them.

For SentencePiece-style tokenizers the normalizing is done here too: the tokenizer is given the
pieces already written with `▁` (one `str.replace` per batch) and runs without its normalizer,
which otherwise costs a sixth of its time. The result is the same ids by construction (the same
normalized pieces meet the same BPE model); a probe at start-up compares both ways on texts with
every added token, spaces, tabs, newlines and other whitespace, and keeps the tokenizer's own
normalizer if any id differs. Where no token of the vocabulary holds a `▁` after another character,
a batch is encoded one distinct word at a time (gamelog.pack.words): half the tokenizer's time, the
same ids (a probe at start-up compares those too).

Offsets are worked out only where asked (`Tokens.derive`): pack places the tokens of a piece
that holds no move bound by the piece alone (gamelog.pack.tokens), which with Phi-3's template is
every piece, and asks for the offsets of the other tokens only.

Nothing is assumed: every batch is checked. The added tokens found must be the added tokens in
the ids, in order (when encoding), and the tokens of every piece whose offsets are asked for must
spell exactly that piece's bytes (every piece's byte count is compared). A batch that fails either
check (an unknown token, a normalizer quirk) is encoded again with the tokenizer's own offsets, so
the result is always the tokenizer's.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain

import numpy as np

from gamelog.pack.words import Words

SPIECE_NORMALIZER = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
SEPARATOR = "\0"  # between the texts of a batch when they are searched at once; a match across it sends the batch to the tokenizer
# What a right-stripping added token swallows: the tokenizer's whitespace (Unicode White_Space),
# which is not Python's `\s` (that also takes \x1c-\x1f).
WHITESPACE = "[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
# Texts on which normalizing here must give the tokenizer's own ids (with every added token, too)
PROBES = ["", " ", "  two  spaces  ", "a\u00a0b\u3000c\x1c d\x1f", "\ttab\n\nnew\r\nline ", "é日本🎉 ü", "trail   ", "<0x0A> and ▁ as text", "▁▁x ▁"]


def _byte_maps(joined: str, raw: bytes):
    """Character -> byte position and byte -> character position in the joined text.

    Built from the non-ASCII characters only (few in most text; none: both are the identity).
    """
    if len(raw) == len(joined):
        same = lambda positions: positions
        return same, same
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    wide = np.flatnonzero(codes >= 0x80)
    extra = np.concatenate([[0], np.cumsum(1 + (codes[wide] >= 0x800) + (codes[wide] >= 0x10000))])  # bytes beyond one per char, before each wide char
    continuation = np.flatnonzero((np.frombuffer(raw, dtype=np.uint8) & 0xC0) == 0x80)
    char_byte = lambda positions: positions + extra[np.searchsorted(wide, positions, side="left")]
    byte_char = lambda positions: positions - np.searchsorted(continuation, positions, side="right")
    return char_byte, byte_char


@dataclass
class Cut:
    """Where each token of a batch lies among the pieces its texts were cut into at their added
    tokens (checked: the added tokens in the ids are the ones found, text by text)."""

    pieces: Pieces
    is_added: np.ndarray  # per token
    added_before: np.ndarray  # per token: the added tokens before it in the batch (an added token's: which match it is)
    piece: np.ndarray  # per token: a plain token's piece (an added token's: the piece it closes)


@dataclass
class Tokens:
    """A batch of texts as flat token arrays: per text its token count; per token its id and character offsets.

    Where the ids came with a `Cut`, the offsets are worked out only when asked, and `derive` works
    out those of some tokens only: a token inside a piece that holds no move bound needs none (see
    gamelog.pack.tokens). Where the spelling does not check out, `ask` replaces the batch with the
    tokenizer's own encodings.
    """

    lengths: np.ndarray  # int64, tokens per text
    ids: np.ndarray  # int32
    given: np.ndarray | None = None  # int64 (tokens, 2): [start, end) in the characters of its own text
    cut: Cut | None = None
    encoder: Encoder | None = None  # with `texts`: what derives the offsets, or asks the tokenizer for them
    texts: list[str] | None = None

    @classmethod
    def from_encodings(cls, encodings) -> Tokens:
        """From the tokenizer's own encodings (with offsets)."""
        lengths, ids = _ids(encodings)
        offsets = np.fromiter(chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)), dtype=np.int64, count=2 * len(ids)).reshape(-1, 2)
        return cls(lengths, ids, offsets)

    @property
    def offsets(self) -> np.ndarray:
        """Every token's character offsets, from the ids where the spelling checks out, else the tokenizer's."""
        if self.given is None:
            self.given = self.derive()
            if self.given is None:
                self.ask()
        return self.given

    def derive(self, tokens: np.ndarray | None = None) -> np.ndarray | None:
        """Character offsets of some tokens (indices, sorted; all by default) worked out from the ids;
        None where the spelling of their pieces does not check out."""
        return self.encoder.spelling.offsets(self.cut, self.lengths, self.ids, tokens)

    def ask(self) -> None:
        """The tokenizer's own encodings of the texts, with offsets, replace these tokens."""
        asked = Tokens.from_encodings(self.encoder.tokenizer.encode_batch(self.texts, add_special_tokens=False))
        self.encoder.asked += 1
        self.lengths, self.ids, self.given, self.cut = asked.lengths, asked.ids, asked.given, None

    def select(self, texts: list[int]) -> Tokens:
        """The tokens of some of the texts, in the order given."""
        offsets = self.offsets
        bounds = np.concatenate([[0], np.cumsum(self.lengths)])
        picked = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in texts]) if texts else np.zeros(0, dtype=np.int64)
        return Tokens(self.lengths[texts], self.ids[picked], offsets[picked])


class Encoder:
    """Encodes batches of texts with a tokenizer; offsets from the ids where the family allows it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.spelling = Spelling.of(tokenizer)
        self.normalizer = None  # the tokenizer's normalizer, when this encoder does its work instead
        self.words = None  # where a batch may be encoded one distinct word at a time (gamelog.pack.words)
        if self.spelling is not None and self.spelling.phantom and self._normalizes_alike():
            self.normalizer = tokenizer.normalizer
            self.words = Words.of(tokenizer, self.spelling)
            if self.words is not None and not self._words_alike():
                self.words = None
        self.derived = 0  # batches encoded here, cut at their added tokens: their offsets, where asked, come from the ids
        self.by_words = 0  # of those, batches encoded one distinct word at a time
        self.asked = 0  # batches the tokenizer encoded (again) with its offsets: another family, or a spelling that did not check out

    def encode(self, texts: list[str]) -> Tokens:
        """The texts' ids; their offsets are worked out when asked (see Tokens) where this tokenizer's
        family is understood and the added tokens in the ids are the ones found, else the tokenizer's."""
        if self.spelling is not None and (pieces := self.spelling.cut(texts)) is not None:
            lengths, ids = self._encode_ids(texts, pieces)
            if (cut := self.spelling.split(pieces, lengths, ids)) is not None:
                self.derived += 1
                return Tokens(lengths, ids, cut=cut, encoder=self, texts=texts)
        if self.spelling is not None:
            self.asked += 1
        return Tokens.from_encodings(self.tokenizer.encode_batch(texts, add_special_tokens=False))

    def _encode_ids(self, texts: list[str], pieces: Pieces, words: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per text its token count, and the ids: normalized here where this encoder does it, and
        one distinct word at a time where the scheme holds (`words`) and the batch fits it."""
        if self.normalizer is None:
            return _ids(self.tokenizer.encode_batch_fast(texts, add_special_tokens=False))
        parts, bounds = self.spelling.parts(pieces)
        with self._bare():
            if words and self.words is not None and (found := self.words.encode(self.tokenizer, pieces, parts, bounds)) is not None:
                self.by_words += 1
                return found
            return _ids(self.tokenizer.encode_batch_fast(_texts(parts, bounds), add_special_tokens=False))

    @contextmanager
    def _bare(self):
        """The tokenizer without its normalizer while inside (this process's encoder is its only user while it encodes)."""
        saved = self.tokenizer.normalizer
        self.tokenizer.normalizer = None
        try:
            yield
        finally:
            self.tokenizer.normalizer = saved

    def _probes(self) -> list[str]:
        """Texts with every added token, spaces, tabs, newlines and other whitespace."""
        return [f"{a} x{a}y  {a}\n\t z {a}{a}" for a in sorted(self.spelling.by_content)] + PROBES

    def _normalizes_alike(self) -> bool:
        """Whether ids of texts normalized here are the tokenizer's own, on the probes."""
        probes = self._probes()
        pieces = self.spelling.cut(probes)
        if pieces is None:
            return False
        own = self.tokenizer.encode_batch_fast(probes, add_special_tokens=False)
        with self._bare():
            here = self.tokenizer.encode_batch_fast(self.spelling.normalized(pieces), add_special_tokens=False)
        return all(a.ids == b.ids for a, b in zip(own, here))

    def _words_alike(self) -> bool:
        """Whether ids encoded one distinct word at a time are those of the whole texts, on the probes
        (each alone, so that an added token is free to stand between words) and on a batch of two
        texts that repeat every word of the plain ones."""
        for probes in [[p] for p in self._probes()] + [[" ".join(PROBES)] * 2]:
            if (pieces := self.spelling.cut(probes)) is None:
                return False
            whole = self._encode_ids(probes, pieces, words=False)
            parts, bounds = self.spelling.parts(pieces)
            with self._bare():
                found = self.words.encode(self.tokenizer, pieces, parts, bounds)
            if found is None or not all(np.array_equal(a, b) for a, b in zip(whole, found)):
                return False
        return True


def _texts(parts: list[str], bounds: list[int]) -> list[str]:
    """Each text joined from its parts (`Spelling.parts`)."""
    return ["".join(parts[bounds[k] : bounds[k + 1]]) for k in range(len(bounds) - 1)]


def _ids(encodings) -> tuple[np.ndarray, np.ndarray]:
    per_text = [e.ids for e in encodings]  # each call builds a new list: once per encoding
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    ids = np.fromiter(chain.from_iterable(per_text), dtype=np.int32, count=int(lengths.sum()))
    return lengths, ids


def _byte_decoder() -> dict[str, int]:
    """The ByteLevel pre-tokenizer's table, reversed: the character that stands for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


@dataclass
class Pieces:
    """A batch's texts cut at their added tokens, in the coordinates of the texts joined by SEPARATOR.

    Each text has one piece more than it has added tokens (pieces may be empty); per text the
    pieces start at `first_gap`, and the added tokens are listed in order over all texts.
    """

    joined: str
    text_start: np.ndarray  # where each text starts in `joined`
    match_start: np.ndarray  # per added token: its span (with the whitespace it swallowed), id and text
    match_end: np.ndarray
    match_ids: np.ndarray
    match_text: np.ndarray
    gap_start: np.ndarray  # per piece: its span
    gap_end: np.ndarray
    first_gap: np.ndarray  # per text: its first piece


class Spelling:
    """What each token id spells, in bytes, for a tokenizer whose family is understood."""

    def __init__(self, surfaces: dict[int, bytes], added: dict[int, tuple[str, bool]], phantom: bool):
        ids = np.fromiter(surfaces, dtype=np.int64, count=len(surfaces))
        spelled = list(surfaces.values())
        lengths = np.fromiter(map(len, spelled), dtype=np.int64, count=len(spelled))
        size = int(ids.max()) + 1
        self.length = np.zeros(size, dtype=np.int64)
        self.start = np.zeros(size, dtype=np.int64)
        self.added = np.zeros(size, dtype=bool)
        self.length[ids] = lengths
        self.start[ids] = np.cumsum(lengths) - lengths  # each id's bytes in the blob, in the dict's order
        self.blob = np.frombuffer(b"".join(spelled) or b"\0", dtype=np.uint8)
        for token_id in added:
            self.added[token_id] = True
        self.phantom = phantom  # a `▁` is prepended to each piece
        # no capturing groups: with them the regex engine loses its fast scan (50 times slower)
        contents = sorted(added.items(), key=lambda item: -len(item[1][0]))
        self.pattern = re.compile("|".join(re.escape(content) + (WHITESPACE if rstrip else "") for _, (content, rstrip) in contents)) if contents else None
        self.by_content = {content: token_id for token_id, (content, _) in added.items()}
        self.content = {token_id: content for token_id, (content, _) in added.items()}
        self.stripping = {content: token_id for token_id, (content, rstrip) in added.items() if rstrip}
        self.matched: dict[str, int] = {}

    @classmethod
    def of(cls, tokenizer) -> Spelling | None:
        """The spelling of a byte-level or SentencePiece-style BPE tokenizer; None for any other."""
        if type(tokenizer.model).__name__ != "BPE":
            return None
        added_tokens = tokenizer.get_added_tokens_decoder()
        if any(a.lstrip or a.single_word for a in added_tokens.values()):
            return None
        added = {token_id: (a.content, a.rstrip) for token_id, a in added_tokens.items()}
        normalizer, pre, post = (_spec(part) for part in (tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.post_processor))
        if post and post.get("type") == "ByteLevel" and post.get("trim_offsets"):
            return None  # offsets trimmed of their spaces: not the spelling
        vocab = tokenizer.get_vocab(with_added_tokens=False)
        tokens = list(vocab)
        if normalizer is None and pre and pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space"):
            table = str.maketrans({c: chr(b) for c, b in _byte_decoder().items()})
            try:  # one character per byte: latin-1 raises for a character outside the byte table
                spelled = [token.translate(table).encode("latin-1") for token in tokens]
            except UnicodeEncodeError:
                return None
            phantom = False
        elif normalizer == SPIECE_NORMALIZER and pre is None and not any(a.normalized or " " in a.content or "▁" in a.content for a in added_tokens.values()):
            spelled = [token.replace("▁", " ").encode("utf-8") for token in tokens]
            if tokenizer.model.byte_fallback:  # <0xNN> spells one byte
                for k, token in enumerate(tokens):
                    if token.startswith("<0x") and (found := BYTE_TOKEN.fullmatch(token)):
                        spelled[k] = bytes([int(found.group(1), 16)])
            phantom = True
        else:
            return None
        surfaces = dict(zip(vocab.values(), spelled))
        surfaces.update({token_id: content.encode("utf-8") for token_id, (content, _) in added.items()})
        return cls(surfaces, added, phantom)

    def cut(self, texts: list[str]) -> Pieces | None:
        """The texts cut at their added tokens; None where a match ran across two texts."""
        joined = SEPARATOR.join(texts)
        text_start = np.concatenate([[0], np.cumsum([len(t) + 1 for t in texts])[:-1]]).astype(np.int64)
        text_end = text_start + np.asarray([len(t) for t in texts], dtype=np.int64)
        found = list(self.pattern.finditer(joined)) if self.pattern is not None else []
        spans = np.fromiter(chain.from_iterable(map(re.Match.span, found)), dtype=np.int64, count=2 * len(found)).reshape(-1, 2)
        match_start, match_end = spans[:, 0], spans[:, 1]
        groups = list(map(re.Match.group, found))
        known = list(map(self.matched.get, groups))  # the same few strings match again and again
        match_ids = np.asarray([self._token_id(g) if k is None else k for g, k in zip(groups, known)] if None in known else known, dtype=np.int32)
        match_text = np.searchsorted(text_start, match_start, side="right") - 1
        if (match_end > text_end[match_text]).any():  # a match ran across the separator
            return None
        count = np.bincount(match_text, minlength=len(texts))
        first_match = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        first_gap = first_match + np.arange(len(texts))  # each text has one piece more than added tokens
        gaps = len(texts) + len(found)
        gap_start, gap_end = np.empty(gaps, dtype=np.int64), np.empty(gaps, dtype=np.int64)
        at = first_gap[match_text] + np.arange(len(found)) - first_match[match_text]  # the piece each match closes
        gap_end[at], gap_start[at + 1] = match_start, match_end
        gap_start[first_gap] = text_start
        gap_end[first_gap + count] = text_end
        return Pieces(joined, text_start, match_start, match_end, match_ids, match_text, gap_start, gap_end, first_gap)

    def normalized(self, pieces: Pieces) -> list[str]:
        """The texts as the SentencePiece normalizer writes them: each non-empty piece with `▁` for
        its spaces and one `▁` before it, and each added token as itself (without what it swallowed)."""
        return _texts(*self.parts(pieces))

    def parts(self, pieces: Pieces) -> tuple[list[str], list[int]]:
        """The normalized texts' parts in order (see `normalized`): piece, added token, ..., piece,
        text after text; and where each text's parts start (and their end)."""
        written = pieces.joined.replace(" ", "▁")  # one character for one: the spans still hold
        parts: list[str] = [""] * (len(pieces.gap_start) + len(pieces.match_start))
        texts = len(pieces.first_gap)
        gap_text = np.repeat(np.arange(texts), np.diff(np.append(pieces.first_gap, len(pieces.gap_start))))
        # in each text the parts go piece, token, piece, ..., piece: gap j sits at 2j - text, match m at 2m + text + 1
        for slot, a, b in zip((2 * np.arange(len(pieces.gap_start)) - gap_text).tolist(), pieces.gap_start.tolist(), pieces.gap_end.tolist()):
            if b > a:
                parts[slot] = "▁" + written[a:b]
        content = self.content
        for slot, token_id in zip((2 * np.arange(len(pieces.match_start)) + pieces.match_text + 1).tolist(), pieces.match_ids.tolist()):
            parts[slot] = content[token_id]
        return parts, (2 * np.append(pieces.first_gap, len(pieces.gap_start)) - np.arange(texts + 1)).tolist()

    def split(self, pieces: Pieces, lengths: np.ndarray, ids: np.ndarray) -> Cut | None:
        """Each token's piece, or None where the added tokens in the ids are not the ones found (in
        order, text by text): the pieces are then not where the tokenizer cut."""
        if len(ids) and int(ids.max()) >= len(self.length):
            return None
        texts = len(lengths)
        is_added = self.added[ids]
        if not np.array_equal(ids[is_added], pieces.match_ids):
            return None
        token_start = np.zeros(texts + 1, dtype=np.int64)
        np.cumsum(lengths, out=token_start[1:])
        added_upto = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(is_added, out=added_upto[1:])
        if not np.array_equal(np.diff(added_upto[token_start]), np.bincount(pieces.match_text, minlength=texts)):
            return None
        # a plain token's piece: one per added token before it, and one per text before its own
        added_before = added_upto[:-1]
        return Cut(pieces, is_added, added_before, added_before + np.repeat(np.arange(texts), lengths))

    def offsets(self, cut: Cut, lengths: np.ndarray, ids: np.ndarray, tokens: np.ndarray | None = None) -> np.ndarray | None:
        """Character offsets of some tokens (sorted indices; all by default), or None where the spelling does not check out.

        The plain tokens, spelled one after another, must give the pieces one after another (each
        non-empty piece after its `▁` where one is prepended): a token's place in that spelled
        stream, less where its piece starts there, is where it starts in its piece. Every piece's
        bytes are counted; those of the pieces that hold the tokens asked for are compared too.
        """
        pieces = cut.pieces
        plain = np.flatnonzero(~cut.is_added)
        gap = cut.piece[plain]
        size = self.length[ids[plain]]
        begin = np.cumsum(size) - size  # where each plain token starts in the spelled stream
        raw = pieces.joined.encode("utf-8")
        char_byte, byte_char = _byte_maps(pieces.joined, raw)
        gap_byte = char_byte(pieces.gap_start)
        gap_bytes = char_byte(pieces.gap_end) - gap_byte
        phantom = int(self.phantom)
        spelled = gap_bytes + np.where(gap_bytes > 0, phantom, 0)  # each piece's bytes in the stream
        if not np.array_equal(np.bincount(gap, weights=size, minlength=len(gap_byte)).astype(np.int64), spelled):
            return None
        tokens = np.arange(len(ids)) if tokens is None else tokens
        asked = np.zeros(len(ids), dtype=bool)
        asked[tokens] = True
        wanted = np.zeros(len(gap_byte), dtype=bool)  # the pieces of the plain tokens asked for
        wanted[gap[asked[plain]]] = True
        spelt = wanted[gap]
        if not self._spells(ids[plain][spelt], size[spelt], raw, gap_byte[wanted], gap_bytes[wanted]):
            return None
        offsets = np.empty((len(tokens), 2), dtype=np.int64)
        row = np.full(len(ids), -1, dtype=np.int64)
        row[tokens] = np.arange(len(tokens))
        base = np.repeat(pieces.text_start, lengths)
        mine = asked[plain]
        piece = gap_byte[gap[mine]]
        at = piece - phantom + begin[mine] - (np.cumsum(spelled) - spelled)[gap[mine]]  # the token's first byte in the joined text (the `▁` lead: before its piece)
        at_plain, width = plain[mine], size[mine]
        offsets[row[at_plain], 0] = byte_char(np.maximum(at, piece)) - base[at_plain]
        offsets[row[at_plain], 1] = byte_char(np.maximum(at + width - 1, piece)) + 1 - base[at_plain]
        added = np.flatnonzero(cut.is_added & asked)
        match = cut.added_before[added]
        offsets[row[added], 0] = pieces.match_start[match] - base[added]
        offsets[row[added], 1] = pieces.match_end[match] - base[added]
        return offsets

    def _token_id(self, matched: str) -> int:
        """The added token a match is (-1: none); remembered for the next batches."""
        token_id = self.by_content.get(matched, self.stripping.get(matched.rstrip(), -1))  # a right-stripping token and the whitespace it swallowed
        if len(self.matched) < 4096:
            self.matched[matched] = token_id
        return token_id

    def _spells(self, ids: np.ndarray, size: np.ndarray, raw: bytes, gap_byte: np.ndarray, gap_bytes: np.ndarray) -> bool:
        """These plain tokens, spelled out, are these pieces' bytes (each after a `▁` where one is prepended)."""
        begin = np.cumsum(size) - size
        spelled = self.blob[np.repeat(self.start[ids] - begin, size) + np.arange(int(size.sum()))]
        pieces = [raw[a : a + n] for a, n in zip(gap_byte.tolist(), gap_bytes.tolist()) if n]
        if not self.phantom:
            return spelled.tobytes() == b"".join(pieces)
        return spelled.tobytes() == (b" " + b" ".join(pieces) if pieces else b"")


def _spec(part) -> dict | None:
    """A tokenizer component's settings as the tokenizer writes them (None: no such component)."""
    return None if part is None else json.loads(part.__getstate__())
