"""Logit steering: the token table follows the emotion model; the bias lifts the target's words and
sinks the opposite valence; the orchestrator gives each candidate its strength."""

import numpy as np
import pytest
import torch

from emotional_engine.emotion.labels import LABELS
from emotional_engine.emotion.steering import LogitBias, TokenAffect, load_or_build, table_key
from fakes import FakeEmotion

VOCAB = ["Ġthe", "Ġgrief", "Ġjoy", "ing", "Ġof", "Ġtable", "Ġa", "Ġlaughter", "Ġ123", "Ġsorrow"]


def emotion_model():
    """grief/sorrow sad, joy/laughter joyful, the rest neutral."""
    return FakeEmotion(
        {"grief": ("sadness", -0.8), "sorrow": ("sadness", -0.7), "joy": ("joy", 0.9), "laughter": ("joy", 0.7)},
        otherwise=("neutral", 0.0),
    )


def test_only_word_start_tokens_are_scored():
    t = TokenAffect.build(VOCAB, emotion_model())
    assert [VOCAB[i] for i in t.ids] == ["Ġthe", "Ġgrief", "Ġjoy", "Ġtable", "Ġlaughter", "Ġsorrow"]
    assert t.probs.shape == (6, len(LABELS)) and t.vocab_size == len(VOCAB)


def test_bias_lifts_the_target_and_sinks_the_opposite():
    t = TokenAffect.build(VOCAB, emotion_model())
    b = t.bias("sadness", -0.8, 1.0)
    ix = {w: i for i, w in enumerate(VOCAB)}
    assert b[ix["Ġgrief"]] > 0 and b[ix["Ġsorrow"]] > 0
    assert b[ix["Ġjoy"]] < 0 and b[ix["Ġlaughter"]] < 0
    assert b[ix["ing"]] == 0 and b[ix["Ġof"]] == 0  # untouched: not word starts / too short
    assert torch.equal(t.bias("sadness", -0.8, 0.0), torch.zeros(len(VOCAB)))
    assert torch.allclose(t.bias("sadness", -0.8, 2.0), 2 * b)  # strength scales (below the clip)
    logits = torch.zeros(len(VOCAB))
    assert torch.equal(LogitBias(b)([1, 2], logits), b)


def test_table_is_built_once_then_loaded(tmp_path):
    head = tmp_path / "head.npz"
    head.write_bytes(b"head v1")
    model = emotion_model()
    a = load_or_build(VOCAB, model, head, tmp_path)
    b = load_or_build(VOCAB, model, head, tmp_path)
    assert model.calls == 1 and np.array_equal(a.ids, b.ids) and np.allclose(a.valence, b.valence, atol=1e-3)
    head.write_bytes(b"head v2")  # a new head invalidates the table
    load_or_build(VOCAB, model, head, tmp_path)
    assert model.calls == 2


@pytest.mark.model
def test_the_shipped_table_fits_the_embedded_model_and_head():
    from emotional_engine.emotion.model import HEAD_PATH
    from emotional_engine.emotion.steering import SHIPPED_DIR
    from emotional_engine.lm.gguf import embedded_model_path, load_gguf

    g, _ = load_gguf(embedded_model_path())
    path = SHIPPED_DIR / f"token-affect-{table_key(list(g.tokenizer.tokens), HEAD_PATH)}.npz"
    assert path.exists(), "the shipped steering table is stale: python -m emotional_engine.training.steering_table"
    t = TokenAffect.load(path)
    words = {g.tokenizer.tokens[i]: k for k, i in enumerate(t.ids)}
    sad = LABELS.index("sadness")
    assert t.valence[words["Ġgrief"]] < -0.3 and t.valence[words["Ġwonderful"]] > 0.3
    assert t.probs[words["Ġgrief"], sad] > t.probs[words["Ġwonderful"], sad]
