"""Every hostile case converts exactly as stated: good records kept, bad ones rejected where they are."""

from __future__ import annotations

import pytest

from gamelog.validate import validate

from hostile.cases import ROOT, cases, run_case

CASES = {case.name: case for case in cases()}


def test_there_are_at_least_40_named_cases():
    assert len(CASES) >= 40 and len(CASES) == len(cases())


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name, tmp_path):
    case = CASES[name]
    facts = run_case(case, tmp_path / name)
    report = facts["report"]
    assert report.records_read == report.records_converted + report.records_rejected
    assert len(facts["rejects"]) == report.records_rejected
    if case.converted is None:  # a cut stream: everything before the cut, then one reject
        assert report.records_converted > 0
        assert [r["reason"] for r in facts["rejects"]] == list(case.rejects.values())
    else:
        assert report.records_converted == case.converted
        assert {r["location"]: r["reason"] for r in facts["rejects"]} == case.rejects
    for reject in facts["rejects"]:
        assert reject["detail"] and reject["location"] and reject["source"]
    if report.episodes_written:
        assert validate(facts["out"]).valid
    assert facts["seconds"] < 10, f"{name} took {facts['seconds']:.1f} s"


def test_robustness_doc_lists_every_case():
    text = (ROOT / "docs" / "robustness.md").read_text(encoding="utf-8")
    for name in CASES:
        assert f"`{name}`" in text, f"docs/robustness.md misses {name}; run python tests/hostile/cases.py --doc"
    assert "| 0 | 0 |" in text  # lost and crashes
