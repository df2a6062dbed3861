"""Load a tokenizer (HF `tokenizers`) with its special tokens, chat template and fingerprint.

    tok = load_tokenizer("../shared/data/tokenizers/phi-3-mini")   # tokenizer.json + tokenizer_config.json
    tok = load_tokenizer("path/gpt2")                               # vocab.json + merges.txt
    tok = load_tokenizer("builtin")                                 # byte-level demo default, no download

The built-in tokenizer is a byte-level BPE with no merges (one token per byte) plus ChatML's
special tokens: enough to run `make demo` offline, not a tokenizer to train with; pass a real one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from gamelog.errors import GamelogError

BUILTIN = "builtin"
BUILTIN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass
class LoadedTokenizer:
    tokenizer: object  # tokenizers.Tokenizer
    name: str
    fingerprint: str
    config: dict = field(default_factory=dict)

    def special(self, key: str) -> str | None:
        value = self.config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) and value else None

    @property
    def bos(self) -> str | None:
        return self.special("bos_token")

    @property
    def eos(self) -> str | None:
        return self.special("eos_token")

    @property
    def chat_template(self) -> str | None:
        template = self.config.get("chat_template")
        if isinstance(template, list):  # named templates: take "default"
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template if isinstance(template, str) else None

    def special_tokens(self) -> set[str]:
        return {t.content for t in self.tokenizer.get_added_tokens_decoder().values()}


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _builtin() -> LoadedTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(BUILTIN_SPECIALS)
    config = {"eos_token": "<|endoftext|>", "bos_token": None, "pad_token": "<|endoftext|>"}
    fingerprint = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()
    return LoadedTokenizer(tokenizer, BUILTIN, fingerprint, config)


def load_tokenizer(spec: str) -> LoadedTokenizer:
    from tokenizers import Tokenizer

    if spec == BUILTIN:
        return _builtin()
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        return _from_files(path, path.parent / "tokenizer_config.json", spec)
    if path.is_dir():
        if (path / "tokenizer.json").exists():
            return _from_files(path / "tokenizer.json", path / "tokenizer_config.json", spec)
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            return _from_bpe(path, spec)
        raise GamelogError(f"tokenizer {spec}: the directory has neither tokenizer.json nor vocab.json + merges.txt.")
    try:
        tokenizer = Tokenizer.from_pretrained(spec)
    except Exception as exc:  # hub client errors vary; all mean the same to the user
        raise GamelogError(
            f"tokenizer {spec}: not a file or directory, and loading it from the Hugging Face hub failed "
            f"({exc.__class__.__name__}); pass a local tokenizer directory (or 'builtin' for the demo default)."
        ) from None
    return LoadedTokenizer(tokenizer, spec, hashlib.sha256(tokenizer.to_str().encode()).hexdigest(), {})


def _from_files(tokenizer_json: Path, config_json: Path, spec: str) -> LoadedTokenizer:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # tokenizers raises plain Exception for bad files
        raise GamelogError(f"tokenizer {tokenizer_json}: cannot be loaded ({exc}).") from None
    files = [tokenizer_json]
    config = {}
    if config_json.exists():
        config = json.loads(config_json.read_text(encoding="utf-8"))
        files.append(config_json)
    return LoadedTokenizer(tokenizer, spec, _fingerprint(files), config)


def _from_bpe(path: Path, spec: str) -> LoadedTokenizer:
    """GPT-2 style vocab.json + merges.txt: byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    vocab = tokenizer.get_vocab()
    config = {}
    if "<|endoftext|>" in vocab:
        tokenizer.add_special_tokens(["<|endoftext|>"])
        config = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}
    files = [path / "vocab.json", path / "merges.txt"]
    if (path / "tokenizer_config.json").exists():
        config |= json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
        files.append(path / "tokenizer_config.json")
    return LoadedTokenizer(tokenizer, spec, _fingerprint(files), config)
