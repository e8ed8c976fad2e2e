"""A LoRA file merged into the builtin model's weights at load: into the weights it was trained on only,
and without touching the cached base weights that a plain load gets."""

from __future__ import annotations

import pytest
import torch

from emotional_engine.lm import lora
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.gguf import load_gguf

pytestmark = pytest.mark.usefixtures("torch_threads", "cache_dir")


def _save(path, model, sha):
    g = torch.Generator().manual_seed(0)
    w = model.layers[1].attn.qkv.weight
    a, b = torch.randn(2, w.shape[1], generator=g), torch.randn(w.shape[0], 2, generator=g)
    lora.save(path, {"layers.1.attn.qkv.weight": (a, b)}, lora.LoraFile("register", sha, 2, [1]))
    return w.detach() + b @ a


def test_builtin_generator_merges_a_lora_trained_on_its_weights(tmp_path, model, gguf_writer):
    path = gguf_writer(model)
    sha = load_gguf(path)[0].sha256
    expected = _save(tmp_path / "mine.pt", model, sha)
    _save(tmp_path / "other.pt", model, "0" * 64)

    gen = BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=False, lora_path=tmp_path / "mine.pt")
    try:
        assert gen.info.lora.startswith("register@")
        assert torch.allclose(gen.batcher.model.layers[1].attn.qkv.weight, expected, atol=1e-5)
        assert torch.equal(gen.batcher.model.layers[0].attn.qkv.weight, model.layers[0].attn.qkv.weight)
    finally:
        gen.batcher.close()
    plain = BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=False)  # from the same weight cache
    try:
        assert plain.info.lora is None
        assert torch.equal(plain.batcher.model.layers[1].attn.qkv.weight, model.layers[1].attn.qkv.weight)
    finally:
        plain.batcher.close()
    with pytest.raises(ValueError, match="another model"):
        BuiltinGenerator.load(path, weight_format="fp32", emotion_adapter=False, lora_path=tmp_path / "other.pt")
