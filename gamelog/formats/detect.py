"""Pick a format from the keys of a file's first records (`--format` overrides).

Each sampled record votes for the first format in FORMATS whose signature it matches; the
format with most votes wins, so a few odd records at the top of a file do not decide it.
"""

from __future__ import annotations

from collections import Counter

from gamelog.formats import FORMATS

SAMPLE = 64


def format_of(record) -> str | None:
    if not isinstance(record, dict):
        return None
    return next((name for name, fmt in FORMATS.items() if fmt.matches(record)), None)


def detect_format(records: list) -> str | None:
    votes = Counter(name for name in map(format_of, records[:SAMPLE]) if name)
    return votes.most_common(1)[0][0] if votes else None


def describe_keys(records: list) -> str:
    keys = Counter(k for r in records[:SAMPLE] if isinstance(r, dict) for k in r)
    return ", ".join(k for k, _ in keys.most_common(12)) or "(no JSON objects)"
