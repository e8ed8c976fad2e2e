"""The register LoRA end to end on a tiny random model: examples laid out as continuation prompts with
the loss on the story text only, training that lowers held-out loss, and a saved file that merges into
fresh weights to give the tuned model's outputs."""

from __future__ import annotations

import random

import pytest
import torch

from emotional_engine.lm import lora
from emotional_engine.lm.model import Llama
from emotional_engine.training.register import (
    RegisterConfig,
    attach_lora,
    build_examples,
    central_sentence,
    lora_deltas,
    pack,
    train_register,
)
from tiny_lm import make_model, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")


def _docs(n: int = 6, seed: int = 0) -> dict[str, list[str]]:
    """Files whose sentences are about their own two things: what a premise can be central to."""
    rng = random.Random(seed)
    things = [("boat", "river"), ("letter", "brother"), ("lamp", "tower"), ("horse", "field"), ("bell", "bay")]
    return {
        f"f{d}": [
            f"The {things[d % 5][0]} was near the {things[d % 5][1]} and {rng.choice(['she', 'he'])} watched it for "
            f"{i + 2} hours."
            for i in range(12)
        ]
        for d in range(n)
    }


def _render(messages):
    return "".join(f"<{m['role']}>{m['content']}" + ("" if m["role"] == "assistant" else "</>") for m in messages)


def _encode(text: str) -> list[int]:
    return [b % 200 for b in text.encode()]


def test_central_sentence_shares_most_words_and_skips_dialogue_and_short_ones():
    sentences = [
        "Rain.",
        '"The letter from my brother is here," she said at the lighthouse door that night.',
        "She read the letter from her brother again by the lighthouse lamp that night.",
        "The cat slept in a warm box by the stove for most of the winter days.",
        "Her brother had written the letter at sea, far from the lighthouse.",
    ]
    assert central_sentence(sentences) == sentences[2]
    assert central_sentence(["Rain.", "Snow fell."]) is None


def test_examples_put_the_loss_on_story_text_only_and_leave_out_unsafe_windows():
    cfg = RegisterConfig(window_tokens=120, context_tokens=40, windows_per_file=4, seq_len=2000)
    docs = _docs(2)
    bad = docs["f1"][0]
    examples = build_examples(docs, _render, _encode, cfg, safe=lambda s: s is not bad)
    openings = [e for e in examples if bytes(e.ids[: e.n_prompt]).decode().endswith("<assistant>")]
    assert len(openings) == 1  # f0's premise-to-opening pair, its reply begun with nothing (f1's was unsafe)
    for e in examples:
        prompt = bytes(e.ids[: e.n_prompt]).decode()
        story = bytes(e.ids[e.n_prompt :]).decode()
        assert "<premise>" in prompt and "Now part" in prompt and "<assistant>" in prompt
        assert "<" not in story and story.strip().startswith("The ")
        assert bad not in story
    # f1's first window held the unsafe sentence: f1 has one example fewer than f0
    assert sum("river" in bytes(e.ids).decode() for e in examples) == 4
    assert sum("brother" in bytes(e.ids).decode() for e in examples) == 3

    tokens, labels = pack(examples, cfg.seq_len, pad=0)
    e = examples[1]
    kept = labels[1][labels[1] != -1].tolist()
    assert kept == e.ids[e.n_prompt :]  # the next tokens of the story's positions, nothing else
    assert tokens[1, : len(e.ids)].tolist() == e.ids


def test_training_lowers_held_out_loss_and_the_saved_file_merges_to_the_tuned_model(tmp_path):
    cfg = RegisterConfig(layers=2, rank=4, window_tokens=60, context_tokens=20, windows_per_file=4, seq_len=800,
                         batch_size=4, steps=40, lr=2e-2)  # fmt: skip
    model = make_model(tiny_config(n_layer=3, context_length=1024), std=0.05)
    base_sd = {k: v.clone() for k, v in model.state_dict().items()}
    train = build_examples(_docs(6), _render, _encode, cfg)
    held = build_examples(_docs(6, seed=1), _render, _encode, cfg)
    out = tmp_path / "register.pt"
    config = train_register(model, train, held, cfg, out, pad=0, base_sha256="abc", log=lambda m: None)
    m = config.metrics
    assert m["heldout_loss_tuned"] < m["heldout_loss_base"] - 0.1
    assert config.layers == [1, 2] and config.base_sha256 == "abc"

    # merged into fresh base weights, the file gives what the trained (wrapped) model computes
    fresh = Llama.from_state_dict(model.config, base_sd)
    sd = dict(base_sd)
    lora.merge(sd, out, "abc")
    fresh.load_weights(sd)
    x = torch.tensor([train[0].ids[:50]])
    with torch.no_grad():
        assert torch.allclose(fresh(x)[0], model(x)[0], atol=1e-4)
        assert not torch.allclose(Llama.from_state_dict(model.config, base_sd)(x)[0], model(x)[0], atol=1e-3)
    assert set(lora_deltas(model)) == {
        f"layers.{i}.{w}.weight" for i in (1, 2) for w in ("attn.qkv", "attn.proj", "mlp.gate_up", "mlp.down")
    }


def test_merge_refuses_other_weights(tmp_path):
    model = make_model(tiny_config(n_layer=2), std=0.05)
    attach_lora(model, RegisterConfig(layers=1, rank=2))
    path = tmp_path / "r.pt"
    lora.save(path, lora_deltas(model), lora.LoraFile("register", "abc", 2, [1]))
    sd = dict(make_model(tiny_config(n_layer=2), std=0.05).state_dict())
    with pytest.raises(ValueError, match="another model"):
        lora.merge(sd, path, "def")
    wider = dict(make_model(tiny_config(n_layer=2, n_embd=96), std=0.05).state_dict())
    with pytest.raises(ValueError, match="does not fit"):
        lora.merge(wider, path, "abc")
