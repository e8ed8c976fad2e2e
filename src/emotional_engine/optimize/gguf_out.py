"""Write a llama GGUF from our weights: the parent file's metadata (tokenizer, chat template, names)
copied, the config keys written anew, each tensor in the block format the recipe gives it, Q and K
rows permuted back to llama.cpp's interleaved rotary layout. The file loads in our runtime and in
llama.cpp alike (both are tested).

Quantisers: the runtime's (`lm.quant.quantise`: the gguf package's for Q8_0, Q4_0, Q4_1, lm/kquants
for Q4_K, Q5_K, Q6_K), numpy for F16. A K-quant row must be whole super-blocks of 256 weights, so a
tensor whose rows are not takes Q8_0, as llama.cpp's quantiser does; the report says which.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import torch

from emotional_engine.lm.gguf import OPTIMIZED_KEY, open_gguf
from emotional_engine.lm.kquants import BLOCK_BYTES, QK_K
from emotional_engine.lm.model import Llama, LlamaConfig
from emotional_engine.lm.quant import quantise
from emotional_engine.optimize.recipe import Recipe

CONFIG_KEYS = {  # written from the new config, never copied
    "llama.block_count",
    "llama.embedding_length",
    "llama.feed_forward_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.context_length",
    "llama.vocab_size",
    "llama.rope.dimension_count",
    "llama.attention.key_length",
    "llama.attention.value_length",
    "general.file_type",
    "general.quantization_version",
    OPTIMIZED_KEY,
}
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Our rotate-half Q/K rows -> llama.cpp's interleaved pairs (the inverse of gguf._reverse_permute)."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, dim, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def weights_of(model: Llama) -> dict[str, torch.Tensor]:
    """A model's weights as `load_gguf` gives them (what `Llama.from_state_dict` takes): the tied head
    left out, the rotary scaling (Llama 3.1+) under `rope_freqs`."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    rope = sd.pop("rotary.rope_freqs", None)
    if model.config.tie_embeddings:
        sd.pop("lm_head.weight", None)
    if model.config.has_rope_freqs:
        sd["rope_freqs"] = rope
    return sd


def gguf_tensors(cfg: LlamaConfig, sd: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Our state dict (fused Q|K|V and gate|up) -> GGUF tensor names and layouts, fp32."""

    def a(name: str) -> np.ndarray:
        return sd[name].detach().float().cpu().numpy()

    q_rows, kv_rows = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    out = {"token_embd.weight": a("tok_embeddings.weight")}
    for i in range(cfg.n_layer):
        o, p = f"layers.{i}.", f"blk.{i}."
        q, k, v = np.split(a(o + "attn.qkv.weight"), [q_rows, q_rows + kv_rows])
        gate, up = np.split(a(o + "mlp.gate_up.weight"), 2)
        out |= {
            p + "attn_norm.weight": a(o + "attn_norm.weight"),
            p + "attn_q.weight": _permute(q, cfg.n_head),
            p + "attn_k.weight": _permute(k, cfg.n_kv_head),
            p + "attn_v.weight": v,
            p + "attn_output.weight": a(o + "attn.proj.weight"),
            p + "ffn_norm.weight": a(o + "mlp_norm.weight"),
            p + "ffn_gate.weight": gate,
            p + "ffn_up.weight": up,
            p + "ffn_down.weight": a(o + "mlp.down.weight"),
        }
    out["output_norm.weight"] = a("norm.weight")
    if not cfg.tie_embeddings:
        out["output.weight"] = a("lm_head.weight")
    if cfg.has_rope_freqs:
        out["rope_freqs.weight"] = a("rope_freqs")
    return out


def quantize(w: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """fp32 [rows, k] -> (the file's bytes or floats, the type written); 1-D tensors (norms) stay F32."""
    if w.ndim == 1 or kind == "F32":
        return w.astype(np.float32), "F32"
    if kind == "F16":
        return w.astype(np.float16), "F16"
    if kind in BLOCK_BYTES and w.shape[-1] % QK_K:
        kind = "Q8_0"  # a K-quant row is whole super-blocks
    return quantise(w.astype(np.float32), kind), kind


def write_gguf(
    out: str | os.PathLike, parent: str | os.PathLike, cfg: LlamaConfig, sd: dict[str, torch.Tensor],
    recipe: Recipe, provenance: dict,
) -> dict[str, str]:  # fmt: skip
    """Write the model to `out` (atomically: a temporary file renamed into place) and return each
    tensor's written type."""
    out = Path(out)
    reader = open_gguf(Path(parent))
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in CONFIG_KEYS or key == "general.architecture":
                continue
            sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub)
        writer.add_block_count(cfg.n_layer)
        writer.add_embedding_length(cfg.n_embd)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.n_kv_head)
        writer.add_context_length(cfg.context_length)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_rope_dimension_count(cfg.head_dim)
        # llama.cpp takes a head's width as embedding / heads unless these say otherwise (pruned heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        written = {}
        for name, w in gguf_tensors(cfg, sd).items():
            data, kind = quantize(w, recipe.kind_of(name))
            raw = None if kind in ("F32", "F16") else gguf.GGMLQuantizationType[kind]  # blocks: their type
            writer.add_tensor(name, data, raw_dtype=raw)
            written[name] = kind
        matrices = Counter(kind for kind in written.values() if kind != "F32")
        writer.add_file_type(FILE_TYPES[matrices.most_common(1)[0][0]] if matrices else 0)  # the main type
        writer.add_string(OPTIMIZED_KEY, json.dumps(provenance, sort_keys=True))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    writer.close()
    os.replace(tmp, out)
    return written
