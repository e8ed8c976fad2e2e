"""SafetyChecker's reports and repair, over a fake classifier (a fixed sentence -> label table), so
these tests need no model; the real classifier is tested in test_safety_model.py."""

import asyncio
import json

import pytest

from emotional_engine.culture import load_profile
from emotional_engine.safety import SafetyChecker, SafetyReport
from fakes import FakeSafety

PERIL = "The wolf chased Ada into the woods."
GRAPHIC = "The wolf tore out the woodcutter's throat and blood sprayed the snow."
STUBBORN = "The hunter gutted the screaming man with his knife."
KISS = "Ada kissed the prince."
SWEAR = '"Fuck," said the hunter.'
LABELS = {
    PERIL: ("violence", 1),
    GRAPHIC: ("gore", 2),
    STUBBORN: ("gore", 2),
    KISS: ("sexual", 1),
    SWEAR: ("profanity", 2),
}


@pytest.fixture
def checker():
    return SafetyChecker(FakeSafety(LABELS))  # anything else is safe; it keeps its batched calls


def test_one_batched_call_per_check(checker):
    verdicts = checker.check_sentences([PERIL, GRAPHIC, "The sun rose."], "children")
    assert [v.action for v in verdicts] == ["allow", "block", "allow"]
    assert checker.model.calls == [[PERIL, GRAPHIC, "The sun rose."]]
    assert verdicts[1].category == "gore" and verdicts[1].severity == 2 and verdicts[1].probability == 0.9


def test_statuses(checker):
    assert checker.check_text("The sun rose. " + PERIL, "children").status == "passed"
    assert checker.check_text(f"The sun rose. {GRAPHIC}", "children").status == "blocked"
    assert checker.check_text(f"The sun rose. {GRAPHIC}", "adult").status == "flagged"
    assert checker.check_text(KISS, "adult").status == "passed"


def test_report_lists_findings_and_culture_notes(checker):
    report = checker.check_text(f"The sun rose.\n\n{GRAPHIC} {SWEAR}", "teen", culture="ja-jp")
    assert [(f.index, f.category, f.action) for f in report.findings] == [
        (1, "gore", "block"),
        (2, "profanity", "flag"),
    ]
    assert report.sentences == 3 and report.audience == "teen"
    assert report.notes == load_profile("ja-JP").sensitivities_for("teen") and report.notes
    dumped = report.model_dump()
    assert json.loads(json.dumps(dumped)) == dumped  # goes into Story.safety as JSON
    assert set(dumped) == {"status", "audience", "sentences", "findings", "repairs", "notes"}


def test_bad_audience_and_culture_are_named(checker):
    with pytest.raises(ValueError, match="unknown audience"):
        checker.check_sentences([PERIL], "toddlers")
    assert checker.model.calls == []  # refused before any model work
    with pytest.raises(ValueError, match="unknown culture"):
        checker.check_text(PERIL, "adult", culture="xx-YY")


def test_sync_runs_on_the_callers_thread_and_async_on_the_model_worker(checker):
    import threading

    seen = []
    orig = checker.model.predict
    checker.model.predict = lambda texts: (seen.append(threading.current_thread().name), orig(texts))[1]
    checker.check_sentences([PERIL], "adult")
    asyncio.run(checker.acheck_text(PERIL, "adult"))
    assert seen[0] == threading.current_thread().name and seen[1].startswith("models")


async def test_repair_replaces_a_blocked_sentence_and_keeps_the_rest(checker):
    asked = []

    async def regenerate(sentence, reason):
        asked.append((sentence, reason))
        return "The wolf  howled at the woodcutter and ran off."

    text = f"Snow fell. {GRAPHIC} Ada ran home.\n\n{PERIL}"
    new, report = await checker.repair(text, "children", regenerate)
    assert new == f"Snow fell. The wolf howled at the woodcutter and ran off. Ada ran home.\n\n{PERIL}"
    assert asked == [(GRAPHIC, "strong gore content is not suitable for a children audience")]
    assert report.status == "repaired" and report.findings == []
    (r,) = report.repairs
    assert (r.index, r.original, r.attempts) == (1, GRAPHIC, 1)
    assert r.replacement == "The wolf howled at the woodcutter and ran off."


async def test_repair_drops_a_sentence_that_stays_blocked_after_two_tries(checker):
    tries = []

    async def regenerate(sentence, reason):
        tries.append(reason)
        return SWEAR if len(tries) == 1 else STUBBORN  # profanity, then gore: both blocked for children

    new, report = await checker.repair(f"Snow fell. {GRAPHIC} Ada ran home.", "children", regenerate)
    assert new == "Snow fell. Ada ran home."
    assert len(tries) == 2 and "gore" in tries[0] and "profanity" in tries[1]  # the 2nd try hears the 1st's fault
    (r,) = report.repairs
    assert r.replacement is None and r.attempts == 2
    assert report.status == "repaired" and report.sentences == 2


async def test_repair_leaves_passing_text_alone_and_keeps_flags(checker):
    async def regenerate(sentence, reason):
        raise AssertionError("nothing should be regenerated")

    text = f"Snow fell. {GRAPHIC}"
    new, report = await checker.repair(text, "adult", regenerate)
    assert new == text and report.status == "flagged" and report.repairs == []


async def test_repair_of_several_sentences_runs_them_concurrently(checker):
    running, peak = 0, 0

    async def regenerate(sentence, reason):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return "Ada sang."

    new, report = await checker.repair(f"{GRAPHIC} {STUBBORN} {SWEAR}", "children", regenerate)
    assert new == "Ada sang. Ada sang. Ada sang." and peak == 3
    assert [r.index for r in report.repairs] == [0, 1, 2] and isinstance(report, SafetyReport)


async def test_a_failing_regenerate_counts_as_a_failed_try(checker):
    calls = 0

    async def regenerate(sentence, reason):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("backend down")
        return "Ada hid behind the well."

    new, report = await checker.repair(f"{GRAPHIC} Ada ran home.", "children", regenerate)
    assert new == "Ada hid behind the well. Ada ran home."
    assert report.repairs[0].attempts == 2 and report.status == "repaired"


async def test_repair_refuses_a_bad_culture_before_regenerating(checker):
    async def regenerate(sentence, reason):
        raise AssertionError("should not be called")

    with pytest.raises(ValueError, match="unknown culture"):
        await checker.repair(GRAPHIC, "children", regenerate, culture="xx-YY")


def test_for_teens_and_adults_only_a_confident_block_blocks():
    from emotional_engine.safety.checker import BLOCK_MIN_PROBABILITY

    def hate(p):
        return SafetyChecker(FakeSafety(otherwise=("hate", 2), probability=p))

    unsure, sure = hate(BLOCK_MIN_PROBABILITY - 0.3), hate(0.99)
    assert [unsure.check_sentences(["x"], a)[0].action for a in ("adult", "teen", "children")] == [
        "flag",
        "flag",
        "block",
    ]
    assert [sure.check_sentences(["x"], a)[0].action for a in ("adult", "teen", "children")] == ["block"] * 3
