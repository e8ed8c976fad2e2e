"""The story commands of the command line (lm, generate, analyze, arcs, cultures, serve; play is in play.py)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from emotional_engine.lm.gguf import ModelFileError

app = typer.Typer(
    help="emotional-engine: stories with emotional intelligence and cultural sensitivity.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress to stderr")] = False):
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _choose(flag: bool | None, default: bool) -> bool:
    """An on/off option's value: as given, else the default."""
    return default if flag is None else flag


@app.command()
def lm(
    prompt: Annotated[str, typer.Argument(help="the prompt; sent as a user chat message unless --raw")],
    model: Annotated[Path | None, typer.Option(help="a llama GGUF file (default: the embedded SmolLM2)")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="tokens to generate at most")] = 256,
    seed: Annotated[int | None, typer.Option(help="same seed, same text")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.9,
    raw: Annotated[bool, typer.Option(help="complete the text as is, without the chat template")] = False,
    weight_format: Annotated[
        str | None, typer.Option(help="native, fp32, fp16, or q8_0 ... q6_k (default from EE_WEIGHT_FORMAT)")
    ] = None,
    emotion: Annotated[str | None, typer.Option(help="condition the emotion-attention adapter on this emotion")] = None,
    emotion_adapter: Annotated[
        bool | None,
        typer.Option(
            "--emotion-adapter/--no-emotion-adapter",
            help="attach the shipped emotion-attention adapter (default: on with --emotion, else EE_EMOTION_ADAPTER)",
        ),
    ] = None,
):
    """Stream a completion from the language model."""
    import asyncio

    from emotional_engine.config import get_settings
    from emotional_engine.lm.builtin import BuiltinGenerator
    from emotional_engine.lm.generator import Completion
    from emotional_engine.lm.sampling import SamplingParams

    s = get_settings()
    try:
        gen = BuiltinGenerator.load(
            model or s.model_path,
            weight_format=weight_format or s.weight_format,
            max_batch=1,
            cache_dir=s.cache_dir,
            overflow=s.context_overflow,
            emotion_adapter=_choose(emotion_adapter, emotion is not None or s.emotion_adapter),
        )
    except (ModelFileError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if emotion is not None and gen.emotion_context(emotion) is None:
        reason = (
            f"choose one of {', '.join(gen.emotion_contexts)}"
            if gen.emotion_contexts
            else "no emotion adapter is loaded"
        )
        typer.echo(f"error: --emotion {emotion!r}: {reason}", err=True)
        raise typer.Exit(2)
    params = SamplingParams(
        max_tokens=max_tokens,
        seed=seed,
        temperature=temperature,
        top_p=max(top_p, 1e-6),
        emotion_context=gen.emotion_context(emotion) if emotion else None,
    )
    prompt_in = prompt if raw else [{"role": "user", "content": prompt}]

    async def run() -> Completion:
        pieces = []
        try:
            async for piece in gen.stream(prompt_in, params):
                sys.stdout.write(piece.text)
                sys.stdout.flush()
                pieces.append(piece)
        finally:
            await gen.aclose()
        return Completion.from_pieces(pieces)

    done = asyncio.run(run())
    sys.stdout.write("\n")
    if done.finish_reason == "error":
        typer.echo(f"error: {done.error}", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"[{done.completion_tokens} tokens, {done.finish_reason}, first token {done.ttft_ms:.0f} ms, "
        f"{done.completion_tokens / max(done.total_ms, 1e-9) * 1000:.1f} tokens/s]",
        err=True,
    )


@app.command()
def generate(
    premise: Annotated[str, typer.Option(help="what the story is about (story material, not instructions)")],
    arc: Annotated[
        str, typer.Option(help="rags_to_riches, tragedy, man_in_a_hole, icarus, cinderella, oedipus")
    ] = "man_in_a_hole",
    arc_points: Annotated[str | None, typer.Option(help='a custom arc, "t,v;t,v;..." (overrides --arc)')] = None,
    culture: Annotated[str, typer.Option(help="a BCP 47 tag; see `emotional-engine cultures`")] = "en-US",
    audience: Annotated[str, typer.Option(help="children, teen or adult")] = "adult",
    words: Annotated[int, typer.Option(help="length of the story in words (50-20,000)")] = 600,
    seed: Annotated[int | None, typer.Option(help="same seed, same story")] = None,
    format: Annotated[str, typer.Option("--format", help="json or markdown")] = "markdown",
    out: Annotated[Path | None, typer.Option(help="write the story here instead of stdout")] = None,
    model: Annotated[
        Path | None, typer.Option(help="write with this llama GGUF file only (default: the configured models)")
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="one of the configured models (EE_MODELS or EE_MODELS_FILE; "
            "default: their routing rules, then their default)"
        ),
    ] = None,
    candidates: Annotated[int, typer.Option(min=1, max=8, help="candidates written per scene")] = 4,
    plot: Annotated[Path | None, typer.Option(help="draw the target and measured arcs to this PNG file")] = None,
    emotion_adapter: Annotated[
        bool | None,
        typer.Option(
            "--emotion-adapter/--no-emotion-adapter",
            help="give every other candidate the emotion-attention adapter (default: EE_EMOTION_ADAPTER, off)",
        ),
    ] = None,
):
    """Write a story whose measured emotions follow the arc."""
    from pydantic import ValidationError
    from rich.progress import Progress

    from emotional_engine.arcs import parse_arc_points
    from emotional_engine.config import get_settings
    from emotional_engine.domain import StoryRequest
    from emotional_engine.engine import Engine

    if format not in ("json", "markdown"):
        typer.echo("error: --format must be json or markdown", err=True)
        raise typer.Exit(2)
    if model is not None and model_name is not None:
        typer.echo("error: give --model (a file) or --model-name (a configured model), not both", err=True)
        raise typer.Exit(2)
    try:
        arc_value = parse_arc_points(arc_points).points if arc_points else arc
        request = StoryRequest(
            premise=premise, arc=arc_value, culture=culture, audience=audience, words=words, seed=seed, model=model_name
        )
    except (ValidationError, ValueError) as e:
        typer.echo(f"error: {_validation_message(e)}", err=True)
        raise typer.Exit(2) from None
    try:
        settings = get_settings()
        if model is not None:  # this file alone, instead of the configured models
            settings = settings.model_copy(
                update={"model_path": model, "models": None, "models_file": None, "openai_base_url": None}
            )
        settings = settings.model_copy(update={"emotion_adapter": _choose(emotion_adapter, settings.emotion_adapter)})
        engine = Engine(settings, candidates=candidates)
        request = engine.pin_model(request)  # an unknown --model-name fails now, before any model loads
    except ValueError as e:  # the model configuration, or the name
        typer.echo(f"error: {_validation_message(e)}", err=True)
        raise typer.Exit(2) from None
    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task("planning", total=None)

        def on_event(e):
            if e.kind == "plan":
                progress.update(task, total=len(e.data.scenes), description="writing scenes")
            elif e.kind == "scene_done":
                progress.update(
                    task, advance=1, description=f"scene {e.data.index + 1} done ({e.data.measured.emotion})"
                )

        try:
            story = engine.generate(request, on_event)
        except ModelFileError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
    text = story.model_dump_json(indent=2) if format == "json" else _markdown(story)
    if plot:
        from emotional_engine.plotting import plot_story

        plot_story(story, plot, engine.emotion.analyze(story.text, 10))
        typer.echo(f"wrote {plot}", err=True)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _validation_message(e: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'request'}: {err['msg']}" for err in e.errors())
    return str(e)


def _markdown(story) -> str:
    rows = "\n".join(
        f"| {s.index + 1} | {s.target.emotion} {s.target.valence:+.2f} | "
        f"{s.measured.emotion} {s.measured.valence:+.2f} |"
        for s in story.scenes
        if s.measured
    )
    q = story.quality
    return (
        f"# {story.title}\n\n{story.text}\n\n---\n\n| scene | target | measured |\n|---|---|---|\n{rows}\n\n"
        f"Quality: overall {q.overall:.2f} (emotion fit {q.emotion_fit:.2f}, characters {q.character_consistency:.2f}, "
        f"culture {q.cultural_fit:.2f}, coherence {q.coherence:.2f}, diversity {q.diversity:.2f})"
        + (f"; premise adherence {q.premise_adherence:.2f}" if q.premise_adherence is not None else "")
        + (f", plan adherence {q.plan_adherence:.2f}" if q.plan_adherence is not None else "")
        + (f", fluency {q.fluency:.2f}" if q.fluency is not None else "")
        + (f", talk about the writing {q.meta_rate:.0%}" if q.meta_rate is not None else "")
        + (f", sentences rewritten {q.resampled_sentences}" if q.resampled_sentences else "")
        + (f"\n\n{q.reasons[0]}" if q.reasons and q.reasons[0].startswith("premise:") else "")
        + (f"\n\nDegraded: {', '.join(story.degraded)}" if story.degraded else "")
    )


@app.command()
def analyze(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a text file")],
    windows: Annotated[int, typer.Option(min=1, max=100, help="equal parts of the text")] = 10,
    plot: Annotated[Path | None, typer.Option(help="draw the arc to this PNG file")] = None,
):
    """The emotional arc of any text: valence, arousal and top emotion per window."""
    from emotional_engine.emotion import analyze as analyze_text

    text = file.read_text(encoding="utf-8")
    if not text.strip():
        typer.echo(f"error: {file} is empty", err=True)
        raise typer.Exit(2)
    arc = analyze_text(text, windows)
    typer.echo("window  valence  arousal  emotion")
    for w in arc:
        typer.echo(f"{w.index + 1:>6}  {w.valence:+.3f}   {w.arousal:+.3f}   {w.emotion}")
    if plot:
        from emotional_engine.plotting import plot_windows

        plot_windows(arc, plot, title=f"emotional arc of {file.name}")
        typer.echo(f"wrote {plot}", err=True)


@app.command()
def arcs(points: Annotated[int, typer.Option(min=2, max=50, help="samples shown per arc")] = 6):
    """List the named emotional arcs with their valence at evenly spaced points."""
    from emotional_engine.arcs import NAMED_ARCS, get_arc

    for name in NAMED_ARCS:
        curve = " ".join(f"{v:+.2f}" for v in get_arc(name).targets(points))
        typer.echo(f"{name:<15} {curve}")


@app.command()
def cultures():
    """List the supported cultures: BCP 47 tag, then the culture's name."""
    from emotional_engine.culture import supported_cultures

    for tag, name in supported_cultures():
        typer.echo(f"{tag:<7} {name}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (default EE_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default EE_PORT, 8000)")] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="on Ray Serve (pip install 'emotional-engine[ray]'): engine replicas behind a gateway, on a "
            "local Ray or the cluster at RAY_ADDRESS; Redis and PostgreSQL are what they share",
        ),
    ] = False,
    min_replicas: Annotated[int, typer.Option(min=1, help="with --ray: replicas kept however idle")] = 1,
    max_replicas: Annotated[int, typer.Option(min=1, help="with --ray: the autoscaler's ceiling")] = 4,
):
    """Run the HTTP API (OpenAPI docs at /docs); the embedded model and a SQLite file unless configured."""
    from emotional_engine.config import get_settings
    from emotional_engine.service import create_app
    from emotional_engine.service.auth import refuse_open_public

    try:
        settings = get_settings()
        api = create_app(settings)  # checks the model configuration (on Ray, before any replica starts)
    except ValueError as e:
        typer.echo(f"error: {_validation_message(e)}", err=True)
        raise typer.Exit(2) from None
    host = host or settings.host
    if why := refuse_open_public(settings.auth_enabled, host, settings.auth_off_on_public_address):
        typer.echo(f"error: {why}", err=True)
        raise typer.Exit(2)
    if ray:
        if max_replicas < min_replicas:
            typer.echo("error: --max-replicas is below --min-replicas", err=True)
            raise typer.Exit(2)
        try:
            from emotional_engine.service import ray_serve
        except ImportError:
            typer.echo("error: Ray is not installed: pip install 'emotional-engine[ray]'", err=True)
            raise typer.Exit(2) from None
        ray_serve.run(host, port or settings.port, ray_serve.autoscaling(min_replicas, max_replicas))
        return
    import uvicorn

    uvicorn.run(api, host=host, port=port or settings.port, log_level="info", timeout_graceful_shutdown=10)
