"""Emotion-aware attention: an adapter in the frozen decoder's top layers (design doc section 3.2).

Per token an emotion context c (CTX_DIM = 11: the emotion model's nine scores in its label order,
valence, arousal; the caller builds it, see training/corpus.py, and the adapter file's
`emotion_contexts` holds one per target emotion). In each adapted layer:

    q_h += (W_q c)_h,  k_g += (W_k c)_g          per query head h and kv head g, before RoPE
    y_h *= 1 + tanh(W_g [x; c])_h                the gate: from the layer's input x and c

Every projection starts at zero, so the adapted model computes exactly the base model until it is
trained; a token whose context is all zeros always gets the base computation (its gate is forced
to 1), so requests without an emotion share a batch with ones that have one.

`CausalSelfAttention` calls `adjust_qk` and `gate` (see lm/model.py); the engine passes each packed
row's context (the request's `SamplingParams.emotion_context`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from emotional_engine.lm.model import Llama, LlamaConfig

CTX_DIM = 11  # nine emotion scores, valence, arousal
SHIPPED_PATH = Path(__file__).parent / "data" / "emotion_adapter.pt"


class EmotionAttentionAdapter(nn.Module):
    def __init__(self, cfg: LlamaConfig, ctx_dim: int = CTX_DIM):
        super().__init__()
        self.n_qk = cfg.n_head + cfg.n_kv_head
        self.head_dim = cfg.head_dim
        self.qk = nn.Linear(ctx_dim, self.n_qk * cfg.head_dim, bias=False)  # c -> per-head q and k offsets
        self.gate_proj = nn.Linear(cfg.n_embd + ctx_dim, cfg.n_head)  # [x; c] -> one gate per query head
        for p in self.parameters():
            nn.init.zeros_(p)

    def adjust_qk(self, qk: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """qk: (N, nh + nkv, hs) queries then keys; ctx: (N, CTX_DIM)."""
        return qk + self.qk(ctx.to(qk.dtype)).view(-1, self.n_qk, self.head_dim)

    def gate(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """x: (N, C), ctx: (N, CTX_DIM) -> (N, nh, 1) multipliers of the per-head outputs."""
        ctx = ctx.to(x.dtype)
        g = 1.0 + torch.tanh(self.gate_proj(torch.cat([x, ctx], dim=-1)))  # (N, nh)
        has_ctx = ctx.ne(0).any(dim=-1, keepdim=True)  # (N, 1): rows without context stay base
        return torch.where(has_ctx, g, torch.ones_like(g)).unsqueeze(-1)


@dataclass
class AdapterConfig:
    layers: list[int]  # indices of the decoder layers that carry an adapter
    ctx_dim: int = CTX_DIM
    # the context to condition on for each target emotion: the mean context of the training
    # sentences the emotion model gave that label with most confidence
    emotion_contexts: dict[str, list[float]] = field(default_factory=dict)
    base_sha256: str | None = None  # weights file the adapter was trained on
    name: str = "emotion-attention"
    metrics: dict = field(default_factory=dict)
    recipe: str = ""


def top_layers(cfg: LlamaConfig, n: int) -> list[int]:
    if not 1 <= n <= cfg.n_layer:
        raise ValueError(f"adapter layers must be between 1 and {cfg.n_layer}, got {n}")
    return list(range(cfg.n_layer - n, cfg.n_layer))


def attach(model: Llama, layers: Sequence[int], ctx_dim: int = CTX_DIM) -> nn.ModuleDict:
    """Give `layers` a fresh (identity) adapter each, freeze everything else; returns the adapters
    keyed by layer index (their state dict is what gets saved)."""
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = nn.ModuleDict()
    for i in layers:
        ref = next((p for p in model.layers[i].parameters()), None)
        a = EmotionAttentionAdapter(model.config, ctx_dim).to(torch.float32 if ref is None else ref.dtype)
        model.layers[i].attn.adapter = a
        adapters[str(i)] = a
    return adapters


def adapter_params(model: Llama) -> list[nn.Parameter]:
    return [p for b in model.layers if b.attn.adapter is not None for p in b.attn.adapter.parameters()]


def save(path: Path, adapters: nn.ModuleDict, config: AdapterConfig) -> None:
    """Atomic write: a crash mid-save leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"config": asdict(config), "state": {k: v.detach().clone() for k, v in adapters.state_dict().items()}}, tmp
    )
    tmp.replace(path)


def _read(path: Path) -> tuple[AdapterConfig, dict]:
    if not Path(path).exists():
        raise FileNotFoundError(
            f"emotion adapter {path} is missing; train one with `emotional-engine train emotion-adapter`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return AdapterConfig(**blob["config"]), blob


def read_config(path: Path = SHIPPED_PATH) -> AdapterConfig:
    """The config of the adapters saved at `path` (which model they were trained on), nothing attached."""
    return _read(path)[0]


def load(model: Llama, path: Path = SHIPPED_PATH) -> AdapterConfig:
    """Attach the adapters saved at `path` to `model` (in place) and return their config."""
    config, blob = _read(path)
    if max(config.layers) >= model.config.n_layer:
        raise ValueError(f"adapter {path} needs {max(config.layers) + 1} layers, the model has {model.config.n_layer}")
    adapters = attach(model, config.layers, config.ctx_dim)
    adapters.load_state_dict(blob["state"])
    return config


def file_id(path: Path) -> str:
    """Short content hash for provenance."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
