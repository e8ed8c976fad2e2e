"""The quality report cannot be fooled (issue 14, item 6): on real engine outputs that talk about the
writing, answer as an assistant or drift off the premise, `overall` stays below every on-premise
story's median. tests/data/planted_stories.jsonl holds the texts with the scores the other agents
gave them then (emotion fit, characters, culture, coherence); premise adherence and the talk measures
are computed now, with the real MiniLM (marked `model`)."""

import statistics
import sys
from pathlib import Path

import pytest

from emotional_engine.agents import adherence, quality


@pytest.mark.model
def test_every_planted_text_scores_below_the_median_story():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from adherence_eval import load, planted_overall
    from emotional_engine.emotion import EmotionModel

    model = EmotionModel.load()

    def embed(texts):
        return model.embedder.encode(texts, normalize_embeddings=True)

    rows = load("planted_stories.jsonl")
    scores = planted_overall(embed, rows)
    good = [o for o, r in zip(scores, rows) if r["kind"] == "good"]
    planted = {(r["kind"], r["source"]): o for o, r in zip(scores, rows) if r["kind"] != "good"}
    assert {kind for kind, _ in planted} == {"meta", "assistant", "drift"} and len(good) >= 4
    median = statistics.median(good)
    assert all(score < median for score in planted.values()), (median, planted)
    # before: the same texts scored 0.58-0.77, among the stories (0.70-0.78)
    assert max(r["overall_then"] for r in rows if r["kind"] != "good") > min(good)


def test_the_talk_measures_on_planted_sentences():
    story = "Mara climbed to the lamp room. She told her brother the story of the storm. The sea was calm."
    talk = "This story explores grief. The ending feels rushed. Your readers will love the plot twist. Mara ran."
    assert adherence.craft_talk_rate(story) == pytest.approx(1 / 3)  # a story may tell a story
    assert adherence.craft_talk_rate(talk) == 0.75 and adherence.craft_talk_rate("") == 0.0
    assert quality.story_factor(None, 0.0, 0.05) == 1.0  # nothing known against it
    assert quality.story_factor(adherence.ON_PREMISE / 2, 0.0, 0.0) == pytest.approx(0.25)  # the shortfall squared
    assert quality.story_factor(0.5, 0.25, 0.0) == 0.0 and quality.story_factor(0.5, 0.0, 0.6) == 0.0
