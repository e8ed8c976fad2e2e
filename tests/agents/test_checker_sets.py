"""The checkers proven on their own planted-error sets (held-out split), as benchmarks/character_checker.py
reports them. The character target is the issue's: recall and precision at least 0.9."""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "character_checker_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "character_checker.py"
)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_the_planted_set_has_the_size_and_variety_the_issue_asks():
    rows = bench.load("character_passages.jsonl")
    kinds = Counter(e["kind"] for r in rows for e in r["errors"])
    assert all(kinds[k] >= 15 for k in bench.KINDS) and sum(kinds.values()) >= 60
    assert sum(not r["errors"] for r in rows) >= 60
    assert len({r["culture"] for r in rows}) >= 10
    assert {r["split"] for r in rows} == {"dev", "test", "fresh"}


@pytest.mark.parametrize(
    "name, split, find, kinds, floor",
    [
        ("character_passages.jsonl", "test", bench.character_findings, bench.KINDS, 0.9),
        ("character_passages.jsonl", "fresh", bench.character_findings, bench.KINDS, 0.9),
        ("sensitivity_passages.jsonl", "test", bench.sensitivity_findings, ("stereotype", "sensitivity"), 0.9),
    ],
)
def test_held_out_recall_and_precision(name, split, find, kinds, floor):
    rows = [r for r in bench.load(name) if r["split"] == split]
    result = bench.score(rows, find, kinds)
    recall, precision = bench.rates(result["counts"]["overall"])
    assert recall >= floor and precision >= floor, result["misses"]


def test_the_checker_is_not_fooled_by_clean_passages_in_either_split():
    rows = [r for r in bench.load("character_passages.jsonl") if not r["errors"]]
    false = [r["id"] for r in rows if bench.character_findings(r)]
    assert len(false) <= 0.05 * len(rows), false
