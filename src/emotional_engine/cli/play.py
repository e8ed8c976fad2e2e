"""Interactive play in the terminal and the session files it keeps: `play` (from a premise, a character
card, or a saved session; `--save` keeps the session after every beat), `lore` (a saved session's
lorebook: list, add, change, delete) and `card` (a saved session's V2 character card, JSON or PNG)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

lore_app = typer.Typer(help="A saved session's lorebook (world info), in its file.", no_args_is_help=True)
FILE_VERSION = 1


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def read_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{path}: no such session file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise fail(f"{path}: not a session file ({e})") from None
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION or "request" not in data:
        raise fail(f"{path}: not a session file of version {FILE_VERSION} (play --save writes them)")
    return data


def write_file(path: Path, data: dict) -> None:
    """Atomically: a crash mid-write leaves the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def play(
    premise: Annotated[str | None, typer.Option(help="what the story is about (or --card, or --load)")] = None,
    culture: Annotated[str, typer.Option(help="a BCP 47 tag")] = "en-US",
    audience: Annotated[str, typer.Option(help="children, teen or adult")] = "adult",
    arc: Annotated[str, typer.Option(help="the arc the beats follow")] = "man_in_a_hole",
    turns: Annotated[int, typer.Option(min=2, max=500, help="turns the arc is spread over")] = 12,
    seed: Annotated[int | None, typer.Option()] = None,
    model_name: Annotated[
        str | None, typer.Option(help="one of the configured models (default: their routing rules, then their default)")
    ] = None,
    card: Annotated[Path | None, typer.Option(help="start from a V2 character card (JSON, or PNG)")] = None,
    load: Annotated[Path | None, typer.Option(help="play on a session saved with --save")] = None,
    save: Annotated[Path | None, typer.Option(help="keep the session in this file after every beat")] = None,
):
    """An interactive story in the terminal: type what happens next, read the next beat (an empty line
    ends). `/lore` lists the lorebook, `/lore KEY, KEY: TEXT` adds an entry."""
    import asyncio

    from pydantic import ValidationError

    from emotional_engine import cards
    from emotional_engine.domain import StoryRequest
    from emotional_engine.engine import Engine

    saved = read_file(load) if load else None
    try:
        if saved is not None:
            request = StoryRequest.model_validate(saved["request"])
        else:
            from_card = cards.session_fields(cards.read(card.read_bytes())) if card else {}
            if not (premise or from_card):
                raise fail("give --premise, --card or --load")
            fields = {"premise": premise, **{k: v for k, v in from_card.items() if k != "card"}}
            request = StoryRequest(culture=culture, audience=audience, arc=arc, seed=seed, model=model_name, **fields)
        engine = Engine()
        request = engine.pin_model(request)  # an unknown --model-name fails now, before any model loads
    except (ValidationError, ValueError) as e:
        from emotional_engine.cli.main import _validation_message

        raise fail(_validation_message(e)) from None
    except OSError as e:
        raise fail(f"{card}: {e.strerror}") from None
    kept_card = saved.get("card") if saved else (from_card.get("card") if card else None)

    async def loop():
        from emotional_engine.session import StorySession

        if saved is not None:
            session = StorySession.from_dict({**saved, "request": request.model_dump()}, await engine.adeps(request))
        else:
            session = await engine.session(request, turns)
        typer.echo(f"Characters: {', '.join(c.name + ' (' + c.role + ')' for c in session.cast)}")
        for beat in session.beats:
            typer.echo(f"\n> {beat.action}\n{beat.text}")
        while True:
            try:
                line = input("\n> ").strip()
            except EOFError:
                break
            if not line:
                break
            if line.startswith("/lore"):
                lore_command(session, line.removeprefix("/lore").strip())
            else:
                async for sentence in session.stream_turn(line):
                    sys.stdout.write(sentence)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            if save:
                await session.settle()
                write_file(save, {**session.to_dict(), "card": kept_card})

    asyncio.run(loop())


def lore_command(session, text: str) -> None:
    from pydantic import ValidationError

    from emotional_engine.domain import LoreEntry

    book = session.request.lorebook
    if not text:
        for e in book:
            typer.echo(f"{e.id}. [{', '.join(e.keys) or 'always'}] {e.content}")
        return
    keys, sep, content = text.partition(":")
    try:
        entry = LoreEntry(id=_next_id(book), keys=[k.strip() for k in keys.split(",")], content=content.strip())
    except ValidationError:
        typer.echo("write /lore KEY, KEY: what the story should know when a key comes up")
        return
    session.request = session.request.model_copy(update={"lorebook": [*book, entry]})
    typer.echo(f"added entry {entry.id}")


def _next_id(book) -> int:
    return 1 + max((e.id or 0 for e in book), default=0)


def _edit_book(path: Path, change) -> None:
    from pydantic import ValidationError

    from emotional_engine.domain import StoryRequest

    data = read_file(path)
    request = StoryRequest.model_validate(data["request"])
    try:
        book = change(list(request.lorebook))
        request = StoryRequest.model_validate({**request.model_dump(), "lorebook": [e.model_dump() for e in book]})
    except ValidationError as e:
        from emotional_engine.cli.main import _validation_message

        raise fail(_validation_message(e)) from None
    write_file(path, {**data, "request": request.model_dump()})


Keys = Annotated[list[str] | None, typer.Option("--key", help="a word or phrase that recalls the entry (repeatable)")]


@lore_app.command("list")
def lore_list(path: Annotated[Path, typer.Argument(help="a session file (play --save)")]):
    """The entries: id, keys (or 'always'), content."""
    from emotional_engine.domain import StoryRequest

    for e in StoryRequest.model_validate(read_file(path)["request"]).lorebook:
        flags = "" if e.enabled else " (disabled)"
        typer.echo(f"{e.id}. [{', '.join(e.keys) or 'always'}]{flags} {e.content}")


@lore_app.command("add")
def lore_add(
    path: Annotated[Path, typer.Argument(help="a session file (play --save)")],
    content: Annotated[str, typer.Option(help="what the story should know")],
    key: Keys = None,
    constant: Annotated[bool, typer.Option(help="recalled every turn, keys or not")] = False,
    order: Annotated[int, typer.Option(help="insertion order: lower first")] = 100,
):
    """Add an entry; recalled when one of its keys comes up (or always, with --constant)."""
    from emotional_engine.domain import LoreEntry

    def change(book):
        entry = LoreEntry(id=_next_id(book), keys=key or [], content=content, constant=constant, insertion_order=order)
        typer.echo(f"added entry {entry.id}")
        return [*book, entry]

    _edit_book(path, change)


@lore_app.command("change")
def lore_change(
    path: Annotated[Path, typer.Argument(help="a session file (play --save)")],
    entry_id: Annotated[int, typer.Argument(metavar="ID")],
    content: Annotated[str | None, typer.Option(help="new content")] = None,
    key: Keys = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
):
    """Change an entry's content, keys (all of them, given again) or whether it is enabled."""

    def change(book):
        if not any(e.id == entry_id for e in book):
            raise fail(f"{path}: no lorebook entry {entry_id}")
        update = {k: v for k, v in (("content", content), ("keys", key), ("enabled", enabled)) if v is not None}
        return [e.model_validate({**e.model_dump(), **update}) if e.id == entry_id else e for e in book]

    _edit_book(path, change)


@lore_app.command("delete")
def lore_delete(
    path: Annotated[Path, typer.Argument(help="a session file (play --save)")],
    entry_id: Annotated[int, typer.Argument(metavar="ID")],
):
    """Delete an entry."""

    def change(book):
        if not any(e.id == entry_id for e in book):
            raise fail(f"{path}: no lorebook entry {entry_id}")
        return [e for e in book if e.id != entry_id]

    _edit_book(path, change)


def card(
    path: Annotated[Path, typer.Argument(help="a session file (play --save)")],
    out: Annotated[Path, typer.Option(help="where to write the card: .png for a PNG, else JSON")],
):
    """Write a saved session's V2 character card: the card it was made from, with its lorebook as it is
    now, or a new one."""
    from emotional_engine import cards

    data = read_file(path)
    made = cards.from_session({**data["request"], "card": data.get("card")})
    out.write_bytes(cards.to_png(made) if out.suffix.lower() == ".png" else cards.to_json(made))
    typer.echo(f"wrote {out}")
