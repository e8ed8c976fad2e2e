"""Adapter training end to end on a tiny random model: chunks, cached lower layers, loss goes down,
checkpoint/resume, saved file loads back."""

from __future__ import annotations

import random

import pytest
import torch

from emotional_engine.emotion.labels import LABELS
from emotional_engine.lm import emotion_attention as ea
from emotional_engine.training.adapter import TrainConfig, make_chunks, split_docs, train_adapter
from tiny_lm import make_model, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")

WORDS = {"joy": "sun laugh bright warm", "fear": "dark cold shadow scream"}


def _ctx(label: str) -> list[float]:
    return [float(k == label) for k in LABELS] + ([0.8, 0.5] if label == "joy" else [-0.6, 0.7])


def _rows(n_docs: int = 10, per_doc: int = 12) -> list[dict]:
    """Documents whose sentences' wording follows their label: the context predicts the text."""
    rng = random.Random(0)
    rows = []
    for d in range(n_docs):
        for _ in range(per_doc):
            label = rng.choice(list(WORDS))
            words = WORDS[label].split()
            rows.append(
                {"doc": f"d{d:02d}", "text": " ".join(rng.choice(words) for _ in range(5)) + ".", "ctx": _ctx(label)}
            )
    return rows


def test_chunks_align_context_with_target_tokens(tokenizer):
    rows = [
        {"doc": "a", "text": "sun sun.", "ctx": _ctx("joy")},
        {"doc": "a", "text": "dark dark.", "ctx": _ctx("fear")},
    ]
    c = make_chunks(rows, tokenizer.encode, seq_len=8)
    first = tokenizer.encode("sun sun.")
    assert c.tokens.shape[1] == 9 and c.ctx.shape[1:] == (8, ea.CTX_DIM)
    n = len(first)
    # position t predicts token t+1: positions whose target is in the first sentence carry its label
    assert torch.equal(c.ctx[0, : n - 1], torch.tensor([_ctx("joy")] * (n - 1)))
    assert torch.equal(c.ctx[0, n - 1], torch.tensor(_ctx("fear")))


def test_chunks_never_cross_documents(tokenizer):
    rows = [{"doc": "a", "text": "sun.", "ctx": _ctx("joy")}, {"doc": "b", "text": "dark.", "ctx": _ctx("fear")}]
    with pytest.raises(ValueError, match="no document"):
        make_chunks(rows, tokenizer.encode, seq_len=8)


def test_split_holds_out_whole_documents():
    train, held = split_docs(_rows(), every=5)
    assert {r["doc"] for r in held} == {"d04", "d09"}
    assert not {r["doc"] for r in train} & {r["doc"] for r in held}


def test_training_lowers_loss_resumes_and_saves(tmp_path, tokenizer):
    model = make_model(tiny_config(n_layer=3), std=0.05)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(
        n_layers=2, seq_len=32, batch_size=4, steps=30, lr=1e-2, ckpt_every=10, eval_every=1000, holdout_every=5
    )
    out = tmp_path / "adapter.pt"
    lines: list[str] = []
    config = train_adapter(model, tokenizer.encode, _rows(), cfg, tmp_path / "work", out, log=lines.append)
    m = config.metrics
    assert m["train_loss_last"] < m["train_loss_first"]
    assert m["ppl_adapter"] < m["ppl_base"]  # the context carries the wording: it must help
    assert m["ppl_adapter"] < m["ppl_shuffled"]  # and only when it is the right context
    assert config.layers == [1, 2] and set(config.emotion_contexts) == set(LABELS)
    assert config.emotion_contexts["joy"][LABELS.index("joy")] == pytest.approx(1.0)
    for k, v in base.items():  # the base stayed frozen
        assert torch.equal(model.state_dict()[k], v), k
    assert any("lower layers" in line for line in lines)  # computed once ...

    # ... and a second run with more steps reuses them and resumes from the checkpoint
    fresh = make_model(tiny_config(n_layer=3), std=0.05)
    lines.clear()
    longer = TrainConfig(**{**cfg.__dict__, "steps": 35})
    train_adapter(fresh, tokenizer.encode, _rows(), longer, tmp_path / "work", tmp_path / "again.pt", log=lines.append)
    assert not any("lower layers" in line for line in lines)
    assert any("resumed at step 30" in line for line in lines)

    loaded = make_model(tiny_config(n_layer=3), std=0.05)
    back = ea.load(loaded, out)
    assert back.layers == [1, 2] and loaded.layers[0].attn.adapter is None
    assert torch.equal(loaded.layers[2].attn.adapter.qk.weight, model.layers[2].attn.adapter.qk.weight)
