"""Helpers for the fast LM tests: a tiny random-weight Llama, a tiny byte-level BPE tokenizer and a
llama.cpp-style GGUF writer. No real weights anywhere.

This is a plain module (not conftest.py) so tests can import it by name: `from tiny_lm import ...`;
pytest puts tests/ on sys.path (the `pythonpath` option in pyproject.toml).
"""

from __future__ import annotations

import functools
import queue
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from emotional_engine.lm.gguf import TokenizerData
from emotional_engine.lm.model import Llama, LlamaConfig

# ---- tokenizer -------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = bytes_to_unicode()
# merges of byte-level symbols ("Ġ" is the space byte); each result is added to the vocabulary
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "e r", "o n", "a n", "Ġ a", "r e", "Ġ s", "l l", "e l", "Ġ w"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NORMAL, CONTROL = 1, 3


def make_tokenizer_data() -> TokenizerData:
    tokens = [BYTE_CHARS[b] for b in range(256)]  # id == byte value
    tokens += [m.replace(" ", "") for m in MERGES]
    types = [NORMAL] * len(tokens)
    tokens += SPECIALS
    types += [CONTROL] * len(SPECIALS)
    assert len(set(tokens)) == len(tokens)
    return TokenizerData(
        model="gpt2",
        pre="gpt2",
        tokens=tokens,
        token_types=types,
        merges=list(MERGES),
        bos_id=None,
        eos_id=tokens.index("<|im_end|>"),
        add_bos=False,
        chat_template=None,
    )


VOCAB_SIZE = 256 + len(MERGES) + len(SPECIALS)


# ---- model -----------------------------------------------------------------------------------


def tiny_config(**kw) -> LlamaConfig:
    base = dict(
        vocab_size=VOCAB_SIZE,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=64,
        head_dim=16,
        intermediate_size=128,
        context_length=128,
        rope_theta=10000.0,
        tie_embeddings=True,
    )
    base.update(kw)
    return LlamaConfig(**base)


@torch.no_grad()
def make_model(cfg: LlamaConfig | None = None, seed: int = 0, std: float = 0.3) -> Llama:
    """A Llama with seeded random weights, scaled up so its greedy output varies."""
    cfg = cfg or tiny_config()
    torch.manual_seed(seed)
    model = Llama(cfg)
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(std * torch.randn(p.shape, generator=g))
    return model.eval()


# ---- engine ----------------------------------------------------------------------------------


def run_concurrently(engine, jobs: Sequence[dict], timeout: float = 60.0):
    """Submit every job at once (each a dict of prompt, params, and optional kv_key /
    processors) and return their Completions in order."""
    from fakes import Completion

    queues = []
    for job in jobs:
        q: queue.Queue = queue.Queue()
        engine.submit(
            engine.encode_prompt(job["prompt"]),
            job["params"],
            q.put,
            kv_key=job.get("kv_key"),
            processors=job.get("processors", ()),
        )
        queues.append(q)
    out = []
    for q in queues:
        pieces = []
        while True:
            p = q.get(timeout=timeout)
            pieces.append(p)
            if p.finish_reason is not None:
                break
        out.append(Completion.from_pieces(pieces))
    return out


# ---- GGUF ------------------------------------------------------------------------------------


def gguf_tensors(model: Llama) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's tensor names, in the file's row layout."""
    from emotional_engine.optimize.gguf_out import gguf_tensors as tensors
    from emotional_engine.optimize.gguf_out import weights_of

    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors(model.config, weights_of(model)).items()}


def qtype_for(tensor_name: str, qtypes: dict[str, str] | None) -> str:
    """The type `qtypes` gives a tensor: keys are prefixes of the short name, the name without
    "blk.N." and ".weight" ("attn_" covers attn_q/k/v/output, "output" the output head); the
    longest matching key wins; default F32."""
    short = tensor_name.removesuffix(".weight")
    if short.startswith("blk."):
        short = short.split(".", 2)[2]
    keys = [k for k in (qtypes or {}) if short.startswith(k)]
    return qtypes[max(keys, key=len)] if keys else "F32"


def write_gguf(
    path: Path,
    model: Llama,
    tok: TokenizerData,
    *,
    qtypes: dict[str, str] | None = None,
    arch: str = "llama",
    tokenizer_model: str | None = None,
    name: str = "tiny-test",
) -> Path:
    """Write `model` as a llama.cpp-style GGUF file. `qtypes` maps a prefix of a tensor's short
    name (see `qtype_for`; e.g. "attn_q", "ffn_", "token_embd") to a GGML type name (F32, F16, Q8_0,
    Q4_0, ...); 1-D tensors always stay F32, as llama.cpp keeps them."""
    import gguf

    from emotional_engine.lm.quant import quantise

    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_uint32(f"{arch}.vocab_size", cfg.vocab_size)
    w.add_uint32(f"{arch}.context_length", cfg.context_length)
    w.add_uint32(f"{arch}.embedding_length", cfg.n_embd)
    w.add_uint32(f"{arch}.block_count", cfg.n_layer)
    w.add_uint32(f"{arch}.feed_forward_length", cfg.intermediate_size)
    w.add_uint32(f"{arch}.attention.head_count", cfg.n_head)
    w.add_uint32(f"{arch}.attention.head_count_kv", cfg.n_kv_head)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.rms_eps)
    w.add_float32(f"{arch}.rope.freq_base", cfg.rope_theta)
    w.add_uint32(f"{arch}.rope.dimension_count", cfg.head_dim)
    w.add_tokenizer_model(tokenizer_model or tok.model)
    w.add_tokenizer_pre(tok.pre)
    w.add_token_list(tok.tokens)
    w.add_token_types(tok.token_types)
    w.add_token_merges(tok.merges)
    if tok.eos_id is not None:
        w.add_eos_token_id(tok.eos_id)
    w.add_add_bos_token(tok.add_bos)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
    for tname, arr in gguf_tensors(model).items():
        qname = qtype_for(tname, qtypes)
        if arr.ndim == 1 or qname == "F32":
            w.add_tensor(tname, arr)
        else:
            qt = gguf.GGMLQuantizationType[qname]
            w.add_tensor(tname, quantise(arr, qname), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


FORMATS = ["fp32", "fp16"] + [f"native-{t}" for t in ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")]


@functools.cache
def _wide_model() -> Llama:
    return make_model(tiny_config(n_embd=256, head_dim=64, intermediate_size=256), std=0.1)  # 0.3 at 64 wide


def base_model(model: Llama, fmt: str) -> Llama:
    """The model a format is tested on: `model`, or for the K-quants (rows of whole 256-weight
    super-blocks) a tiny model 256 wide, its weights scaled down to keep the activations in range."""
    return _wide_model() if fmt.endswith("_K") else model


def formatted(model: Llama, fmt: str) -> Llama:
    """A copy of `model` in weight format `fmt` (one of FORMATS; native ones quantised from its weights)."""
    import copy

    from emotional_engine.lm.quant import apply_weight_format, blocks_from_weights

    if fmt.startswith("native-"):
        return apply_weight_format(copy.deepcopy(model), "native", blocks_from_weights(model, fmt.split("-")[1]))
    return apply_weight_format(copy.deepcopy(model), fmt)
