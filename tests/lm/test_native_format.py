"""The native weight format on the embedded model: the file's own blocks, fused and permuted like the
fp32 weights, multiplied by the C++ kernels; and the PyTorch path when the kernels are missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants

from emotional_engine.lm import kernels
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.gguf import load_gguf, native_blocks
from emotional_engine.lm.model import Llama
from emotional_engine.lm.quant import FP16Linear, NativeLinear, _linears, apply_weight_format
from emotional_engine.lm.sampling import SamplingParams


@pytest.fixture(scope="module")
def embedded(embedded_path):
    g, sd = load_gguf(embedded_path)
    return g, sd, native_blocks(g.path, g.config, kernels.GGML_TYPES)


def test_the_files_blocks_hold_exactly_the_weights_the_model_is_built_from(embedded):
    """Q/K rows permuted and Q|K|V, gate|up fused as for the fp32 weights: dequantised, bit for bit."""
    g, sd, native = embedded
    assert len(native) == 4 * g.config.n_layer + 1
    for name, (qtype, blocks) in native.items():
        weight = sd["tok_embeddings.weight" if name == "lm_head" else name + ".weight"]
        back = quants.dequantize(blocks.numpy(), GGMLQuantizationType(qtype))
        assert np.array_equal(back, weight.numpy()), name


async def test_the_embedded_model_runs_native_and_writes_like_fp16(embedded_path):
    native = BuiltinGenerator.load(embedded_path, weight_format="native", emotion_adapter=False)
    fp16 = BuiltinGenerator.load(embedded_path, weight_format="fp16", emotion_adapter=False)
    try:
        model = native.batcher.model
        assert native.info.weight_format == "native"
        assert all(isinstance(getattr(p, n), NativeLinear) for p, n in _linears(model))
        messages = [{"role": "user", "content": "Write one sentence about a lighthouse keeper who finds a letter."}]
        greedy = SamplingParams(max_tokens=24, temperature=0.0)
        a, b = await native.complete(messages, greedy), await fp16.complete(messages, greedy)
        assert a.completion_tokens == 24 and a.text.split()[:8] == b.text.split()[:8]
    finally:
        await native.aclose()
        await fp16.aclose()


def test_without_the_kernels_native_is_the_fp16_path(embedded, monkeypatch):
    g, sd, native = embedded
    monkeypatch.setattr(kernels, "ops", lambda: None)  # as when they could not be built
    model = apply_weight_format(Llama.from_state_dict(g.config, dict(sd)), "native", native)
    assert model.weight_format == "fp16"
    assert all(isinstance(getattr(p, n), FP16Linear) for p, n in _linears(model))
    assert model(torch.tensor([[1, 2, 3]]))[0].shape[-1] == g.config.vocab_size
