"""The `emotional-engine` command line: a thin typer layer over typed entry points."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from emotional_engine.lm.gguf import ModelFileError

app = typer.Typer(help="emotional-engine: stories with emotional intelligence and cultural sensitivity.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress to stderr")] = False):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def lm(
    prompt: Annotated[str, typer.Argument(help="the prompt; sent as a user chat message unless --raw")],
    model: Annotated[Optional[Path], typer.Option(help="a llama GGUF file (default: the embedded SmolLM2)")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens to generate at most")] = 256,
    seed: Annotated[Optional[int], typer.Option(help="same seed, same text")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.9,
    raw: Annotated[bool, typer.Option(help="complete the text as is, without the chat template")] = False,
    weight_format: Annotated[Optional[str], typer.Option(help="fp32 or fp16 (default from EE_WEIGHT_FORMAT)")] = None,
):
    """Stream a completion from the language model."""
    from emotional_engine.config import get_settings
    from emotional_engine.lm.backends import BuiltinGenerator
    from emotional_engine.lm.sampling import SamplingParams

    s = get_settings()
    try:
        gen = BuiltinGenerator.load(model or s.model_path, weight_format=weight_format or s.weight_format,
                                    max_batch=1, cache_dir=s.cache_dir, overflow=s.context_overflow)
    except (ModelFileError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    params = SamplingParams(max_tokens=max_tokens, seed=seed, temperature=temperature, top_p=max(top_p, 1e-6))
    prompt_in = prompt if raw else [{"role": "user", "content": prompt}]
    done = gen.engine.generate(prompt_in, params, on_piece=lambda p: (sys.stdout.write(p.text), sys.stdout.flush()))
    sys.stdout.write("\n")
    gen.engine.close()
    if done.finish_reason == "error":
        typer.echo(f"error: {done.error}", err=True)
        raise typer.Exit(1)
    typer.echo(f"[{done.completion_tokens} tokens, {done.finish_reason}, first token {done.ttft_ms:.0f} ms, "
               f"{done.completion_tokens / max(done.total_ms, 1e-9) * 1000:.1f} tokens/s]", err=True)


@app.command()
def arcs(points: Annotated[int, typer.Option(min=2, max=50, help="samples shown per arc")] = 6):
    """List the named emotional arcs with their valence at evenly spaced points."""
    from emotional_engine.arcs import NAMED_ARCS, get_arc

    for name in NAMED_ARCS:
        curve = " ".join(f"{v:+.2f}" for v in get_arc(name).targets(points))
        typer.echo(f"{name:<15} {curve}")


if __name__ == "__main__":
    app()
