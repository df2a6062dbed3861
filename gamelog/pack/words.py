"""Encode a batch one distinct word at a time, for SentencePiece-style BPE tokenizers.

Such a tokenizer (Llama 2, Mistral, Phi-3) has no pre-tokenizer: each piece of text between two
added tokens, written with `▁` for its spaces and one `▁` before it, is one word to its BPE model,
merged as a whole. Where no token of the vocabulary holds a `▁` after another character, no merge
can join what comes before a `▁` that follows another character with what comes after it, so the
piece's tokens are those of its words (a run of `▁` and what follows it up to the next such `▁`),
each encoded alone. Text repeats its words: the 20,000 conversations of the speed benchmark hold
2.4 M words, 18% of them distinct within their batch of 512 (each batch a different set of
conversations). So each batch's distinct words are encoded once, in one text with a free added
token between them, and the batch's ids are gathered from theirs: the tokenizer's time per batch
falls by half, and the ids are its own (the argument above; compared at start-up on probes, and in
tests/test_words.py with the tokenizer's own encodings on every shared dataset).

The argument also needs a BPE model that merges every word (no `ignore_merges`), without dropout,
word prefix or suffix, and whose unknown tokens cannot fuse across words (byte fallback with every
byte, or no fusing). A batch that does not fit (a NUL or \\x01 in its text, no added token free to
stand between words, ids that do not come out as expected) is encoded whole.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

LEAD = "▁".encode()
RUN = LEAD + b"\x00" + LEAD  # a word break inside a run of `▁`: undone
END = 1  # the byte of the word that closes each text (it stands for no token)


class Words:
    """The distinct-word scheme for one tokenizer: the added tokens that may stand between words
    (content and id; right-stripping ones last), tried in turn until one is free in the batch."""

    def __init__(self, separators: list[tuple[str, int]]):
        self.separators = separators

    @classmethod
    def of(cls, tokenizer, spelling) -> Words | None:
        """The scheme where it holds for this tokenizer (see the module's doc), else None."""
        model = tokenizer.model
        if model.dropout or model.ignore_merges or model.continuing_subword_prefix or model.end_of_word_suffix:
            return None
        if model.fuse_unk and not (model.byte_fallback and all(tokenizer.token_to_id(f"<0x{b:02X}>") is not None for b in range(256))):
            return None
        if _inner_lead(spelling):
            return None
        stripping = set(spelling.stripping.values())
        ordered = sorted(spelling.content.items(), key=lambda item: item[0] in stripping)
        separators = [(content, token_id) for token_id, content in ordered]
        return cls(separators) if separators else None

    def encode(self, tokenizer, pieces, parts: list[str], bounds: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per text its token count, and the batch's ids; None where the batch does not fit the scheme.

        `parts` are the batch's pieces (with their `▁`) and added tokens in order, text after text
        (`bounds`: where each text's parts start, and their end), as the tokenizer is given them
        without its normalizer; `tokenizer` runs without it here.
        """
        texts = len(bounds) - 1
        if pieces.joined.count("\x00") != texts - 1 or chr(END) in pieces.joined:
            return None
        used = set(pieces.match_ids.tolist())
        separator = next((s for s in self.separators if s[1] not in used), None)
        if separator is None:
            return None
        raw, starts = _words(parts, bounds)
        index, distinct, count = _distinct(raw, starts)
        ids = np.asarray(tokenizer.encode_batch_fast([distinct.replace(b"\x00", separator[0].encode()).decode()], add_special_tokens=False)[0].ids, dtype=np.int32)
        at = np.flatnonzero(ids == separator[1])  # one before each distinct word
        if len(at) != count or (count and at[0] != 0):
            return None
        size = np.diff(np.append(at, len(ids))) - 1
        ends = np.flatnonzero((np.diff(np.append(starts, len(raw))) == 2) & (np.frombuffer(raw, np.uint8)[np.minimum(starts + 1, len(raw) - 1)] == END))
        if len(ends) != texts:
            return None
        size[index[ends[0]]] = 0
        per_word = size[index]
        upto = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(per_word, out=upto[1:])
        taken = np.repeat(at[index] + 1 - upto[:-1], per_word) + np.arange(int(upto[-1]))
        return np.diff(upto[ends + 1], prepend=0), ids[taken]


def _inner_lead(spelling) -> bool:
    """Whether a token of the vocabulary spells a `▁` (a space in its spelling) after another character."""
    blob = spelling.blob
    starts = np.zeros(len(blob), dtype=bool)
    starts[spelling.start[(spelling.length > 0) & (spelling.start < len(blob))]] = True
    space = blob == 0x20
    return bool((space[1:] & ~space[:-1] & ~starts[1:]).any())


def _words(parts: list[str], bounds: list[int]) -> tuple[bytes, np.ndarray]:
    """The batch as UTF-8 with a NUL before every word, and where each word starts: each part
    (a piece or an added token) starts one, and so does each `▁` after another character; each
    text ends with the word \\x01."""
    closing = "\x00" + chr(END)
    stream = "".join(["\x00" + "\x00".join(parts[bounds[k] : bounds[k + 1]]) + closing for k in range(len(bounds) - 1)])
    raw = stream.encode("utf-8").replace(LEAD, b"\x00" + LEAD)
    while RUN in raw:  # each pass joins every other break of a run
        raw = raw.replace(RUN, LEAD + LEAD)
    return raw, np.flatnonzero(np.frombuffer(raw, np.uint8) == 0)


def _distinct(raw: bytes, starts: np.ndarray) -> tuple[np.ndarray, bytes, int]:
    """Per word the index of its distinct word; the distinct words one after another (each after
    its NUL), in the order first seen; and how many there are."""
    # pyarrow.compute's call_function, from the module that defines it: importing pyarrow.compute
    # builds a wrapper for every kernel (25 ms a process, before pack forks its workers), this 4 ms
    try:
        from pyarrow._compute import call_function
    except ImportError:  # a pyarrow that keeps it elsewhere: the public module has it
        from pyarrow.compute import call_function

    offsets = np.append(starts, len(raw)).astype(np.int64)
    words = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(raw)])
    encoded = call_function("dictionary_encode", [words])
    indices, dictionary = encoded.indices, encoded.dictionary
    index = np.frombuffer(indices.buffers()[1], np.int32, len(indices), indices.offset)
    bounds = np.frombuffer(dictionary.buffers()[1], np.int64, len(dictionary) + 1, dictionary.offset)
    distinct = memoryview(dictionary.buffers()[2])[bounds[0] : bounds[-1]].tobytes()
    return index, distinct, len(dictionary)
