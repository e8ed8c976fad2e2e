"""Training for the pipeline: healing a pruned model on calibration text (full fine-tune, next-token
cross-entropy) and distilling a student from a teacher (KL divergence to the teacher's softened
next-token distribution, mixed with the cross-entropy). Small by design: it runs on CPU at a tiny size
in the tests, and at the size the benchmark or a user asks for where there is more time or a GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emotional_engine.lm.model import Llama


@dataclass(frozen=True)
class FitSettings:
    steps: int = 100
    batch: int = 4  # windows a step
    lr: float = 5e-5
    temperature: float = 2.0  # of the teacher's and student's softmax in the KL term
    alpha: float = 0.5  # weight of the KL term (1 - alpha: the cross-entropy on the text)
    seed: int = 0


def _loss(student: Llama, batch: torch.Tensor, teacher: Llama | None, s: FitSettings) -> torch.Tensor:
    """batch (B, T) ids -> cross-entropy on the next tokens, or with a teacher
    alpha * KL(teacher || student) * temperature^2 + (1 - alpha) * cross-entropy."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits, ce = student(inputs, targets)
    if teacher is None:
        return ce
    with torch.no_grad():
        teacher_logits, _ = teacher(inputs)
    t = s.temperature
    kl = F.kl_div(
        F.log_softmax(logits.float() / t, -1).flatten(0, 1),
        F.log_softmax(teacher_logits.float() / t, -1).flatten(0, 1),
        log_target=True,
        reduction="batchmean",
    )
    return s.alpha * kl * t * t + (1 - s.alpha) * ce


def fit(
    student: Llama,
    windows: torch.Tensor,
    settings: FitSettings,
    teacher: Llama | None = None,
    progress: Callable[[int, float], None] = lambda step, loss: None,
) -> list[float]:
    """Train `student` in place on `windows` (n, T) of token ids; returns the loss of every step."""
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(settings.seed)
    losses = []
    for step in range(settings.steps):
        idx = torch.randint(len(windows), (min(settings.batch, len(windows)),), generator=g)
        loss = _loss(student, windows[idx], teacher, settings)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        progress(step, losses[-1])
    student.eval()
    return losses


@torch.no_grad()
def loss_on(model: Llama, windows: torch.Tensor, teacher: Llama | None = None, settings: FitSettings | None = None):
    """The mean loss `fit` would see on `windows`, without training."""
    s = settings or FitSettings()
    return sum(float(_loss(model, w[None], teacher, s)) for w in windows) / len(windows)
