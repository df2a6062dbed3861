"""Property tests: whatever records arrive, conversion never crashes and the accounting adds up."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gamelog.convert import ConvertOptions, Tally, convert_source
from gamelog.records import Episode
from gamelog.write.shards import EPISODE_JSON_FIELDS

ROLES = st.sampled_from(["human", "gpt", "user", "assistant", "system", "tool", "observation", "function_call", "Narrator", " GPT ", "", None])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
CONTENT = st.one_of(st.text(max_size=30), SCALARS, st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "reasoning", "image"]), "value": SCALARS}), max_size=3))
SHAREGPT_MESSAGE = st.fixed_dictionaries({"from": ROLES, "value": CONTENT})
OPENAI_MESSAGE = st.fixed_dictionaries({"role": ROLES, "content": CONTENT}, optional={"tool_calls": st.one_of(SCALARS, st.lists(st.dictionaries(st.sampled_from(["function", "name"]), SCALARS, max_size=2), max_size=2))})
RECORD = st.one_of(
    st.fixed_dictionaries({"conversations": st.one_of(st.lists(SHAREGPT_MESSAGE, max_size=5), SCALARS)}, optional={"system": SCALARS}),
    st.fixed_dictionaries({"messages": st.one_of(st.lists(OPENAI_MESSAGE, max_size=5), SCALARS)}, optional={"label": SCALARS}),
    st.fixed_dictionaries({"instruction": SCALARS, "output": SCALARS}, optional={"input": SCALARS, "history": st.lists(st.lists(SCALARS, max_size=3), max_size=2)}),
    st.fixed_dictionaries({"prompt": SCALARS, "chosen": CONTENT, "rejected": CONTENT}),
    st.fixed_dictionaries({"question": SCALARS, "answer": st.one_of(SCALARS, st.lists(SCALARS, max_size=3))}, optional={"context": SCALARS}),
    st.fixed_dictionaries({"prompt": SCALARS, "completions": st.lists(st.one_of(SCALARS, st.fixed_dictionaries({"response": SCALARS, "rating": SCALARS})), max_size=3)}, optional={"labels": st.lists(SCALARS, max_size=3)}),
    st.fixed_dictionaries({"prompt": st.fixed_dictionaries({"role": ROLES, "text": SCALARS, "replies": st.lists(st.fixed_dictionaries({"role": ROLES, "text": SCALARS, "rank": SCALARS, "replies": st.just([])}), max_size=3)})}),
    st.fixed_dictionaries({"text": SCALARS}),
    SCALARS,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(records=st.lists(RECORD, min_size=1, max_size=8), format=st.sampled_from(["auto", "sharegpt", "openai", "alpaca", "dpo", "qa", "ratings", "stepwise", "oasst", "kto", "text"]))
def test_convert_never_crashes_and_accounts_for_every_record(tmp_path_factory, records, format):
    path = tmp_path_factory.mktemp("fuzz") / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tally = Tally()
    batches = list(convert_source(str(path), ConvertOptions(format=format, dedup="none"), tally, {}))
    episodes = [ep for table, _ in batches if table is not None for ep in _rows(table)]
    rejects = [r for _, bad in batches for r in bad]
    assert tally.read == len(records) == tally.converted + sum(tally.rejected.values())
    assert len(rejects) == sum(tally.rejected.values())
    assert all(r["location"].startswith("line ") and r["reason"] for r in rejects)
    for episode in episodes:
        Episode.model_validate(episode)


def _rows(table) -> list[dict]:
    """Episode rows as written, with their JSON-string fields parsed back."""
    return [row | {key: json.loads(row[key]) for key in EPISODE_JSON_FIELDS} for row in table.to_pylist()]


CONTAINERS = st.sampled_from(["data.jsonl", "data.json", "data.txt", "data.csv", "data.jsonl.gz"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(blob=st.one_of(st.binary(max_size=400), st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\x00", b"\xff", b'"text"', b'"a"', b"1", b"null", b" "]), max_size=60).map(b"".join)), name=CONTAINERS)
def test_readers_never_crash_on_arbitrary_bytes(tmp_path_factory, blob, name):
    import gzip

    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(gzip.compress(blob) if name.endswith(".gz") else blob)
    tally = Tally()
    batches = list(convert_source(str(path), ConvertOptions(dedup="none"), tally, {}))
    rejects = [r for _, bad in batches for r in bad]
    assert tally.read == tally.converted + sum(tally.rejected.values()) == tally.converted + len(rejects)
    for table, _ in batches:
        for episode in _rows(table) if table is not None else []:
            Episode.model_validate(episode)
