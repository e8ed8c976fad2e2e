"""Parity of our decoder with an independent implementation of the same GGUF weights (transformers)."""

import pytest
import torch

from emotional_engine.lm.sampling import SamplingParams

pytestmark = pytest.mark.model

PROMPTS = [
    "The old lighthouse keeper opened the letter and",
    "<|im_start|>user\nTell me a story about a brave girl in Nairobi.<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, 1234 dragons lived in 56 caves. They",
]


@pytest.fixture(scope="module")
def hf_model(embedded_path):
    transformers = pytest.importorskip("transformers")  # a test dependency: installed by `make test`
    m = transformers.AutoModelForCausalLM.from_pretrained(
        str(embedded_path.parent), gguf_file=embedded_path.name, dtype=torch.float32
    )
    return m.eval()


@pytest.fixture(scope="module")
def hf_tokenizer(embedded_path):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(embedded_path.parent), gguf_file=embedded_path.name)


def test_tokenizer_matches_transformers(fp32_generator, hf_tokenizer):
    tok = fp32_generator.batcher.tok
    for text in PROMPTS + ["Café déjà vu 🙂 — naïve 123456789\n\n\ttabs  and   spaces"]:
        assert tok.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)


@torch.no_grad()
def test_last_position_logits_match(fp32_generator, hf_model):
    batcher = fp32_generator.batcher
    for text in PROMPTS:
        ids = batcher.tok.encode(text)
        ours, _ = batcher.model(torch.tensor([ids]))
        theirs = hf_model(torch.tensor([ids])).logits
        assert (ours[0, -1] - theirs[0, -1]).abs().max().item() < 1e-3


@torch.no_grad()
def test_greedy_tokens_match(fp32_generator, hf_model):
    batcher = fp32_generator.batcher
    for text in PROMPTS:
        ids = batcher.tok.encode(text)
        out = hf_model.generate(
            torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, len(ids) :].tolist()
        done = batcher.generate(ids, SamplingParams(max_tokens=32, temperature=0.0, ignore_eos=True))
        assert done.token_ids == out
