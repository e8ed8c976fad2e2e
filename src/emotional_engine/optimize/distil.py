"""A student for distillation: fewer layers of the teacher, initialised from the teacher's own, then
trained by `fit` on the teacher's next-token distributions.

Which layers: with the teacher's block influence measured on calibration text (prune.measure), the
most influential ones, in order (on the embedded model, a 20-layer student chosen this way reached a
held-out perplexity of 110 where evenly spaced layers, as DistilBERT took every other one, reached
2,395 after the same training: docs/benchmarks.md); without it, evenly spaced with the first and
last kept."""

from __future__ import annotations

from dataclasses import replace

import torch

from emotional_engine.lm.model import Llama
from emotional_engine.optimize.gguf_out import weights_of


class DistilError(ValueError):
    pass


def student_layers(n_teacher: int, n_student: int, influence: torch.Tensor | None = None) -> list[int]:
    """`influence`: the teacher's block influence per layer (prune.Importance.layers)."""
    if not 1 <= n_student < n_teacher:
        raise DistilError(f"a student needs 1 to {n_teacher - 1} layers (the teacher has {n_teacher}), not {n_student}")
    if influence is not None:
        return sorted(influence.topk(n_student).indices.tolist())
    if n_student == 1:
        return [n_teacher - 1]
    return sorted({round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)})


def student_from(teacher: Llama, keep: list[int]) -> Llama:
    """A new model with the teacher's layers `keep` (copies, in order; `student_layers` chooses them), its
    embeddings, norm and head."""
    sd = weights_of(teacher)
    out = {k: v.clone() for k, v in sd.items() if not k.startswith("layers.")}
    for j, i in enumerate(keep):
        prefix = f"layers.{i}."
        out |= {f"layers.{j}.{k[len(prefix) :]}": v.clone() for k, v in sd.items() if k.startswith(prefix)}
    return Llama.from_state_dict(replace(teacher.config, n_layer=len(keep)), out)
