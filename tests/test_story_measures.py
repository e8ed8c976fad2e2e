"""The story-quality benchmark's own measures (benchmarks/story_measures.py), on planted examples and
on hand-labelled real sentences; the two model measures once each with the embedded model."""

import json
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import story_measures as sm  # noqa: E402

DATA = Path(__file__).parent / "data"
PREMISE = "A lighthouse keeper finds a letter from her lost brother."


# ---- premise recall ---------------------------------------------------------------------------


def test_a_text_without_the_premise_recalls_nothing():
    text = "In this scene, the invasion of North Joe gives a perspective on danger. My writing challenges me."
    assert sm.premise_recall(text, PREMISE) == 0.0
    assert sm.missing_premise_words(text, PREMISE) == ["lighthouse", "keeper", "finds", "letter", "lost", "brother"]


def test_inflected_forms_meet_by_their_stem():
    text = "The lighthouses stood dark. Two keepers were reading letters their brothers had written; one was lost."
    # lighthouse, keeper, letter, lost, brother: all found in another form; "finds" is not there at all
    assert sm.premise_recall(text, PREMISE) == pytest.approx(5 / 6)
    assert sm.missing_premise_words(text, PREMISE) == ["finds"]
    assert sm.premise_recall("She was finding her way.", "She finds her way") == 1.0


def test_a_compound_written_as_two_words_meets_its_one_word_form():
    assert sm.premise_recall("The bee keeper walked out to her hives.", "A beekeeper and her hives.") == 1.0
    assert sm.premise_recall("The bee stung the keeper.", "A beekeeper and her hives.") == 0.0


def test_the_whole_premise_and_a_premise_of_stop_words():
    assert sm.premise_recall(f"Once, {PREMISE.lower()} It was raining.", PREMISE) == 1.0
    assert sm.premise_recall("anything at all", "It is what it is.") == 1.0  # no content word to miss
    assert sm.content_stems("The Keeper's LETTERS") == {"keeper", "letter"}


# ---- writing talk -----------------------------------------------------------------------------

PLANTED_TALK = [
    "In this scene, Georgia McNab's story of invasion gives a perspective that matters.",
    "I must admit that my writing challenges me often.",
    "Here is a revised version of the scene.",
    "To achieve that, I added a descriptive phrase.",
    "The original introduction felt too direct.",
    "As an AI, I do not have feelings.",
    "I hope you enjoy this story!",
    "Let me know if you would like any changes.",
    "In many ways, you have successfully distilled the essence of the story.",
    "So, I think you're right again!",
    "Scene 2:",
    "Title: The Keeper of the Light",
    "(word count: 150)",
]
PLAIN_STORY = [
    "The lamp at the top of the tower had not been lit for three nights.",
    "She read her brother's letter twice, then folded it into her coat.",
    '"You\'re right," she said, and closed the door behind her.',
    "I added salt to the soup and waited for the kettle.",
    "The audience roared as the curtain fell.",
    "Part of him wanted to stay.",
    "In the story he told, the sea was always kind.",
    "He wrote a story for his daughter every winter.",
]


def test_planted_talk_about_the_writing_is_caught_and_plain_story_is_not():
    for s in PLANTED_TALK:
        assert sm.writing_talk_rule(s), s
    for s in PLAIN_STORY:
        assert sm.writing_talk_rule(s) is None, (s, sm.writing_talk_rule(s))


def test_the_rate_counts_headings_and_sentences_of_a_text():
    text = "Scene 2: The Storm\nThe wind rose. The boats came in! I hope you enjoy it. Waves broke on the wall."
    assert sm.split_into_sentences(text) == [
        "Scene 2: The Storm",
        "The wind rose.",
        "The boats came in!",
        "I hope you enjoy it.",
        "Waves broke on the wall.",
    ]
    assert sm.writing_talk_sentences(text) == ["Scene 2: The Storm", "I hope you enjoy it."]
    assert sm.writing_talk_rate(text) == pytest.approx(2 / 5)
    assert sm.writing_talk_rate("") == 0.0
    listed = "The bees were gone.\n\n1. **Tone**: A mix of romance and nostalgia.\n2. **Craft**: Sensory details."
    assert sm.split_into_sentences(listed) == [
        "The bees were gone.",
        "**Tone**: A mix of romance and nostalgia.",
        "**Craft**: Sensory details.",
    ]
    assert sm.writing_talk_rate(listed) == pytest.approx(2 / 3)


def test_the_rules_on_the_held_out_half_of_the_labelled_real_sentences():
    """tests/data/meta_sentences.jsonl: 128 real sentences (engine stories and plain-prompt stories)
    labelled by hand. The rules were written looking only at the even-numbered lines; this asserts
    on the odd-numbered ones (measured: precision 1.00, recall 0.62, 20 of 32 caught, 0 of 32 story
    sentences flagged; on the even half 1.00 and 0.93)."""
    rows = [json.loads(line) for line in (DATA / "meta_sentences.jsonl").read_text().splitlines() if line.strip()]
    test = rows[1::2]
    flagged = [sm.writing_talk_rule(r["sentence"]) is not None for r in test]
    tp = sum(f and r["meta"] for f, r in zip(flagged, test))
    precision = tp / sum(flagged)
    recall = tp / sum(r["meta"] for r in test)
    assert precision >= 0.9 and recall >= 0.6, (precision, recall)


def test_the_rules_leave_real_fiction_alone():
    """Story sentences written by people: the benchmark's held-out text (0 of 102 flagged) and the
    emotion test set (1 of 309: "...when the narrator revealed she had been dead all along")."""
    heldout = (Path(__file__).parents[1] / "benchmarks" / "data" / "heldout.txt").read_text()
    assert sm.writing_talk_sentences(heldout) == []
    rows = [json.loads(line) for line in (DATA / "emotion_test.jsonl").read_text().splitlines() if line.strip()]
    sentences = [s for r in rows for s in sm.split_into_sentences(r["text"])]
    assert sum(sm.writing_talk_rule(s) is not None for s in sentences) <= 0.01 * len(sentences)


# ---- diversity and repetition -----------------------------------------------------------------


def test_distinct_n_on_constructed_texts():
    assert sm.distinct_n("a b c d e", 2) == 1.0
    assert sm.distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)  # ab ba ab ba ab: 2 distinct of 5
    assert sm.distinct_n("The cat. the CAT!", 1) == pytest.approx(2 / 4)
    assert sm.distinct_n("one", 2) == 0.0


def test_repeated_4gram_rate_on_constructed_texts():
    assert sm.repeated_4gram_rate("one two three four five six") == 0.0
    # 8 words: 5 four-grams; "a b c d" occurs at 0 and 4, the other three once each
    assert sm.repeated_4gram_rate("a b c d a b c d") == pytest.approx(2 / 5)
    assert sm.repeated_4gram_rate(" ".join(["x y z w"] * 10)) > 0.9
    assert sm.repeated_4gram_rate("too short") == 0.0


# ---- statistics -------------------------------------------------------------------------------


def test_bootstrap_on_known_data():
    mean, lo, hi = sm.bootstrap_ci([5.0] * 20)
    assert (mean, lo, hi) == (5.0, 5.0, 5.0)
    values = [0.0] * 50 + [1.0] * 50
    mean, lo, hi = sm.bootstrap_ci(values, n=4000, seed=1)
    assert mean == 0.5
    se = math.sqrt(0.25 / 100)  # the normal interval is mean +- 1.96 se (0.402 .. 0.598)
    assert lo == pytest.approx(0.5 - 1.96 * se, abs=0.02) and hi == pytest.approx(0.5 + 1.96 * se, abs=0.02)
    assert sm.bootstrap_ci(values, seed=3) == sm.bootstrap_ci(values, seed=3)  # seeded: reproducible
    assert sm.bootstrap_ci([None, 1.0, float("nan"), 3.0])[0] == 2.0
    assert all(math.isnan(x) for x in sm.bootstrap_ci([]))


def test_auc():
    assert sm.auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert sm.auc([0.1], [0.9]) == 0.0
    assert sm.auc([0.5], [0.5]) == 0.5


def test_the_model_measures_want_the_builtin_runtime():
    with pytest.raises(TypeError, match="not the builtin generator"):
        sm.perplexity(object(), "Some text.")


class _Runtime:
    """What the model measures reach for in `BuiltinGenerator`: `.batcher.model` and `.batcher.tok`."""

    def __init__(self, model, tok):
        self.batcher = type("B", (), {"model": model, "tok": tok})()


def test_perplexity_in_windows_predicts_every_token_once_with_its_context(model, tokenizer):
    """On the tiny random model: one window is exp(the model's own loss); short windows equal a
    per-token reference where the token at position p (predicted in the window ending at `end`)
    sees ids[max(0, end - window) : p]."""
    import torch
    import torch.nn.functional as F

    gen = _Runtime(model, tokenizer)
    text = "the cat sat on the mat and then the dog ran in the sun all day"
    ids = tokenizer.encode(text)
    with torch.inference_mode():
        _, loss = model(torch.tensor(ids[:-1])[None], torch.tensor(ids[1:])[None])
    assert sm.perplexity(gen, text) == pytest.approx(math.exp(float(loss)), rel=1e-4)

    window = 8
    ends, start = [], 1  # the windows: the first is `window` long, each later one adds window // 2 tokens
    while start < len(ids):
        ends.append(min(len(ids), start + window // 2 if start > 1 else window))
        start = ends[-1]
    nll, begin = 0.0, 1
    with torch.inference_mode():
        for end in ends:
            for p in range(begin, end):
                ctx = ids[max(0, end - window) : p]
                logits, _ = model(torch.tensor(ctx)[None])
                nll -= float(F.log_softmax(logits[0, -1].float(), -1)[ids[p]])
            begin = end
    assert len(ids) > 2 * window
    assert sm.perplexity(gen, text, window=window) == pytest.approx(math.exp(nll / (len(ids) - 1)), rel=1e-4)


# ---- the embedded model -----------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.usefixtures(
    "torch_threads"
)  # one thread: a busy 2-core machine's OpenMP barriers cost more than they give
def test_perplexity_and_the_judge_with_the_embedded_model(fp32_generator):
    fluent = "The old fisherman pulled his boat onto the sand and walked slowly home as the sun went down."
    words = fluent.split()
    random.Random(0).shuffle(words)
    assert sm.perplexity(fp32_generator, fluent) < sm.perplexity(fp32_generator, " ".join(words)) / 5

    story = (
        "Every night Mara climbed the ninety steps of the lighthouse to light the lamp. One stormy evening the "
        "postman brought a letter in her brother's hand, the brother who had been lost at sea ten years before."
    )
    other = "A baker opens a bakery in Paris."
    cal = sm.judge_calibration(fp32_generator, [story, other], [PREMISE, other])
    assert len(cal["matched"]) == 2 and cal["shuffled_by_text"] == [[cal["shuffled"][0]], [cal["shuffled"][1]]]
    assert 0.0 <= cal["auc"] <= 1.0 and min(cal["shuffled"]) <= cal["threshold"] <= max(cal["shuffled"])
    own = sm.about_premise_probability(fp32_generator, story, PREMISE)
    assert own == pytest.approx(cal["matched"][0], abs=1e-4)  # the kept, cut-back cache changes nothing
    assert 0.0 < own < 1.0  # (the yes/no judge is too weak to order this pair: see about_premise_probability)

    pmi = sm.judge_calibration(fp32_generator, [story], [PREMISE], judge="pmi")
    assert pmi["shuffled"] == []  # one premise: nothing to shuffle
    assert pmi["matched"][0] == pytest.approx(sm.premise_pmi(fp32_generator, story, PREMISE), abs=1e-4)
    assert pmi["matched"][0] > 0 > sm.premise_pmi(fp32_generator, story, other)


# ---- the benchmark's requests and table ---------------------------------------------------------


def test_the_held_out_and_development_requests():
    import story_quality as sq
    from emotional_engine.arcs import NAMED_ARCS
    from emotional_engine.culture import load_profile

    assert len(sq.HELD_OUT) == 12 and len(sq.DEV) == 8
    assert sorted(i.arc for i in sq.HELD_OUT) == sorted(list(NAMED_ARCS) * 2)  # each named arc twice
    assert {i.premise for i in sq.HELD_OUT}.isdisjoint(i.premise for i in sq.DEV)
    assert len({i.seed for i in sq.HELD_OUT + sq.DEV}) == 20
    for item in sq.HELD_OUT + sq.DEV:
        load_profile(item.culture)  # a culture the engine has
        assert len(sm.content_stems(item.premise)) >= 5  # concrete key words to recall


def test_the_table_compares_engine_and_baseline_with_intervals():
    import story_quality as sq

    keys = [k for k, *_ in sq.TABLE]
    rows = [
        {
            "engine": {k: 0.9 for k in keys} | {"premise_recall": r, "first_text_s": 2.0 + r},
            "baseline": {k: 0.5 for k in keys} | {"premise_recall": 0.5, "first_text_s": 0.2},
        }
        for r in (0.8, 0.9, 1.0)
    ]
    summary = sq.summarise(rows)
    mean, lo, hi = summary["premise_recall"]["engine"]
    assert mean == pytest.approx(0.9) and 0.8 <= lo <= mean <= hi <= 1.0
    assert summary["premise_recall"]["difference"][0] == pytest.approx(0.4)
    assert summary["first_text_s"]["engine"][0] == 2.9  # a median
    assert sq.target_met("premise_recall", 0.9, 0.5) == "met"
    assert sq.target_met("premise_recall", 0.9, 0.8) == "MISSED"  # not 0.2 above the baseline
    assert sq.target_met("writing_talk_rate", 0.02, 0.0) == "MISSED"
    assert sq.target_met("seconds_per_word", 0.3, 0.1) == "MISSED"
