"""Low-rank weight deltas (LoRA) merged into a model's fp32 weights when it is loaded, before the
weight format is applied, so a tuned model runs at the base model's speed in every format.

A file holds {"config": LoraFile fields, "deltas": {weight name: (A (r, in), B (out, r))}}, B
already multiplied by the LoRA scale: W' = W + B @ A. training/register.py writes one; the
builtin backend merges it only into the weights it was trained on (`base_sha256`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class LoraFile:
    name: str
    base_sha256: str | None
    rank: int
    layers: list[int]
    metrics: dict = field(default_factory=dict)
    recipe: str = ""


def save(path: Path, deltas: dict[str, tuple[torch.Tensor, torch.Tensor]], config: LoraFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pairs = {k: (a.contiguous(), b.contiguous()) for k, (a, b) in deltas.items()}
    torch.save({"config": asdict(config), "deltas": pairs}, tmp)
    tmp.replace(path)


def load(path: Path) -> tuple[LoraFile, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    state = torch.load(path, weights_only=True)
    return LoraFile(**state["config"]), state["deltas"]


@torch.no_grad()
def merge(sd: dict[str, torch.Tensor], path: Path, model_sha256: str) -> LoraFile:
    """Add the file's deltas to the state dict `sd` in place; a file trained on other weights, or one
    naming a weight the model lacks or with other shapes, is refused."""
    config, deltas = load(path)
    if config.base_sha256 not in (None, model_sha256):
        raise ValueError(f"LoRA {path} was trained on another model ({config.base_sha256[:12]})")
    for name, (a, b) in deltas.items():
        w = sd.get(name)
        if w is None or w.shape != (b.shape[0], a.shape[1]):
            raise ValueError(f"LoRA {path}: {name} does not fit this model")
        sd[name] = w + (b.float() @ a.float()).to(w.dtype)
    return config
