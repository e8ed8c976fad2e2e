"""The optimisation pipeline (`emotional-engine optimize`): prune, heal, distil and quantise a llama
GGUF into a new one, each step optional and reported, the steps and their settings written into the
new file's metadata with the calibration text's hash and the parent file's sha256.

Order: prune (measured on the calibration text) then heal on it; distil a student with fewer layers
(the teacher's most influential ones) from the model so far (the parent, or the healed pruned model)
as its teacher; then write every tensor in the recipe's format. A file written here is a model like
any other: list it in EE_MODELS_FILE (or EE_MODEL_PATH) and it serves; `GET /v1/models` and
`Story.provenance` show what was done to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from emotional_engine.lm.gguf import load_gguf, open_gguf, read_metadata
from emotional_engine.lm.model import Llama
from emotional_engine.lm.tokenizer import BPETokenizer
from emotional_engine.optimize import calibration
from emotional_engine.optimize.distil import student_from, student_layers
from emotional_engine.optimize.fit import FitSettings, fit, loss_on
from emotional_engine.optimize.gguf_out import weights_of, write_gguf
from emotional_engine.optimize.prune import PruneSpec, measure, prune
from emotional_engine.optimize.recipe import Recipe
from emotional_engine.version import __version__

Progress = Callable[[str], None]


@dataclass
class Plan:
    prune: PruneSpec | None = None
    heal: FitSettings = field(default_factory=lambda: FitSettings(steps=0))
    distil_layers: int | None = None  # the student's layers
    distil: FitSettings = field(default_factory=lambda: FitSettings(steps=100))
    quant: str | None = None  # a recipe (optimize/recipe.py); None: each tensor as the parent had it
    window: int = 256  # tokens a calibration window
    importance_windows: int = 32  # of them, measured for pruning


@dataclass
class Report:
    out: Path
    steps: list[dict]
    parent_bytes: int
    out_bytes: int
    seconds: float
    written: dict[str, str]  # tensor -> type


def optimize(
    model: str | Path, out: str | Path, plan: Plan, texts: list[str], progress: Progress = lambda line: None
) -> Report:
    """Write the optimised model to `out`; `texts`: the calibration text (calibration.py)."""
    start, model, out = time.perf_counter(), Path(model), Path(out)
    read_metadata(model)  # a clear ModelFileError for what is not a llama GGUF, before any work
    if out.resolve() == model.resolve():
        raise ValueError(f"--out {out} is the model itself; write the optimised model to a new file")
    parent_types = {t.name: t.tensor_type.name for t in open_gguf(model).tensors}
    recipe = Recipe.parse(plan.quant or "keep", parent_types)  # refused before any work
    g, sd = load_gguf(model)
    net = Llama.from_state_dict(g.config, {k: v.float().clone() for k, v in sd.items()})
    tokenizer = BPETokenizer(g.tokenizer)
    data = calibration.windows(tokenizer, texts, plan.window)
    steps: list[dict] = []
    progress(f"calibration: {len(texts)} texts, {data.numel():,} tokens in {len(data)} windows of {plan.window}")

    if plan.prune is not None:
        imp = measure(net, data[: plan.importance_windows])
        before = _params(net)
        cfg, pruned = prune(net, plan.prune, imp)
        net = Llama.from_state_dict(cfg, pruned)
        steps.append({"step": "prune", **plan.prune.describe(), "importance": "activations",
                      "measured_windows": min(len(data), plan.importance_windows), "parameters_before": before,
                      "parameters_after": _params(net), "kept_layers": cfg.n_layer,
                      "kept_ffn": cfg.intermediate_size, "kept_kv_heads": cfg.n_kv_head})  # fmt: skip
        progress(f"pruned {plan.prune.describe()}: {before:,} -> {_params(net):,} parameters")
        if plan.heal.steps:
            steps.append(_train("heal", net, data, plan.heal, None, progress))

    if plan.distil_layers is not None:
        teacher = net
        influence = measure(teacher, data[: plan.importance_windows]).layers
        kept = student_layers(teacher.config.n_layer, plan.distil_layers, influence)
        student = student_from(teacher, kept)
        step = _train("distil", student, data, plan.distil, teacher, progress)
        steps.append(step | {"student_layers": plan.distil_layers, "teacher_layers": teacher.config.n_layer,
                             "kept_teacher_layers": kept, "chosen_by": "block influence"})  # fmt: skip
        net = student

    provenance = {
        "engine": __version__,
        "parent": {"file": model.name, "sha256": g.sha256, "name": g.name},
        "calibration": {"sha256": calibration.digest(texts), "texts": len(texts), "tokens": int(data.numel())},
        "steps": [*steps, {"step": "quantise", "recipe": recipe.describe()}],
    }
    written = write_gguf(out, model, net.config, weights_of(net), recipe, provenance)
    progress(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {recipe.describe()})")
    return Report(out, provenance["steps"], model.stat().st_size, out.stat().st_size,
                  time.perf_counter() - start, written)  # fmt: skip


def _params(net: Llama) -> int:
    return sum(v.numel() for v in weights_of(net).values())


def _train(name: str, net: Llama, data: torch.Tensor, s: FitSettings, teacher: Llama | None, progress: Progress):
    # the last tenth, not trained on, gives the loss before and after (with a single window, it is trained on)
    held = data[-max(1, len(data) // 10) :]
    train = data[: -len(held)] if len(data) > len(held) else data
    before = loss_on(net, held, teacher, s)
    every = max(1, s.steps // 10)

    def report(step: int, loss: float) -> None:
        if step % every == 0:
            progress(f"{name} step {step}: {loss:.3f}")

    losses = fit(net, train, s, teacher, report)
    after = loss_on(net, held, teacher, s)
    progress(f"{name}: held-out loss {before:.3f} -> {after:.3f}")
    return {"step": name, **asdict(s), "heldout_loss_before": round(before, 4), "heldout_loss_after": round(after, 4),
            "train_loss_first": round(losses[0], 4) if losses else None,
            "train_loss_last": round(losses[-1], 4) if losses else None}  # fmt: skip
