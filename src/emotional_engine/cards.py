"""Character cards, V2 (`chara_card_v2`, the format SillyTavern and other front ends exchange), read from
JSON or from a PNG's `chara` text chunk (base64 JSON), written back both ways, and mapped onto a session.

Import: the character becomes the cast's protagonist (its personality, split at commas, the traits);
the scenario is the premise (the description where there is none); the description, the personality
and the example dialogue become constant lorebook entries (recalled every turn), the card's character
book the session's other lorebook entries, and the first message the story so far, after the premise.
Export: a session's card is the card it was made from, when there was one, with the lorebook as it is
now; every field the card had, the spec's and others, is kept, so a card survives the round trip.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emotional_engine.domain import CastMember, LoreEntry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREMISE_CHARS = 2000  # StoryRequest.premise's limit
LORE_CHARS = 2000  # LoreEntry.content's limit


class CardError(ValueError):
    """A card that cannot be read: the message names the field."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields beyond the spec's travel on untouched


class BookEntry(_Open):
    keys: list[str]
    content: str
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int = 0
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | None = None
    id: int | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] | None = None
    constant: bool | None = None
    position: Literal["before_char", "after_char"] | None = None


class CharacterBook(_Open):
    name: str | None = None
    description: str | None = None
    scan_depth: int | None = None
    token_budget: int | None = None
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[BookEntry] = Field(default_factory=list)


class CardData(_Open):
    name: str = Field(min_length=1)
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""
    system_prompt: str = ""
    post_history_instructions: str = ""
    alternate_greetings: list[str] = Field(default_factory=list)
    character_book: CharacterBook | None = None
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    extensions: dict[str, Any] = Field(default_factory=dict)


class Card(_Open):
    spec: Literal["chara_card_v2"]
    spec_version: Literal["2.0"]
    data: CardData


def read(raw: bytes) -> Card:
    """A card from JSON bytes or a PNG carrying one; `CardError` naming the field when it is not valid."""
    if raw.startswith(PNG_SIGNATURE):
        raw = _png_text(raw)
    try:
        blob = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CardError(f"the card is not JSON (nor a PNG with a card in its chara chunk): {e}") from None
    try:
        return Card.model_validate(blob)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "card"
        raise CardError(f"{where}: {err['msg']}" + (f" (got {err['input']!r})" if where == "spec" else "")) from None


def _png_text(raw: bytes) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        text = Image.open(io.BytesIO(raw)).text
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise CardError(f"the PNG cannot be read: {e}") from None
    if "chara" not in text:
        raise CardError("chara: the PNG has no character card in a 'chara' text chunk")
    try:
        return base64.b64decode(text["chara"], validate=True)
    except (binascii.Error, ValueError):
        raise CardError("chara: the PNG's card is not base64") from None


def to_json(card: Card) -> bytes:
    return card.model_dump_json(exclude_none=True).encode()  # the optional fields a card leaves out stay out


def to_png(card: Card, image: bytes | None = None) -> bytes:
    """The card in a PNG's `chara` chunk: `image` (a PNG) if given, else a plain 256 x 256 one."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    picture = Image.open(io.BytesIO(image)) if image else Image.new("RGB", (256, 256), (48, 56, 72))
    info = PngInfo()
    info.add_text("chara", base64.b64encode(to_json(card)).decode())
    out = io.BytesIO()
    picture.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def session_fields(card: Card) -> dict:
    """What a card sets of a session's request: premise, cast, lorebook (and the card itself, for its
    export). `CardError` when a field will not fit."""
    d = card.data
    premise = d.scenario.strip() or d.description.strip() or f"A story about {d.name}."
    if d.first_mes.strip():
        premise += "\nThe story so far: " + d.first_mes.strip()
    if len(premise) > PREMISE_CHARS:
        what = "data.scenario and data.first_mes" if d.scenario.strip() else "data.description and data.first_mes"
        raise CardError(f"{what}: {len(premise)} characters make the premise; the engine takes {PREMISE_CHARS}")
    traits = [t.strip() for t in d.personality.split(",") if t.strip() and len(t.strip()) <= 60][:12]
    lore = _field_lore(d)
    for i, e in enumerate(d.character_book.entries if d.character_book else []):
        try:
            lore.append(_lore(e, f"data.character_book.entries.{i}"))
        except ValidationError as err:
            raise CardError(f"data.character_book.entries.{i}: {err.errors()[0]['msg']}") from None
    lore = [entry.model_copy(update={"id": i + 1}) for i, entry in enumerate(lore)]
    protagonist = CastMember(name=d.name, role="protagonist", traits=traits)
    return {"premise": premise, "cast": [protagonist], "lorebook": lore, "card": card.model_dump(mode="json")}


def _field_lore(d: CardData) -> list[LoreEntry]:
    """The card's description (when the scenario is the premise), personality and example dialogue, as
    constant lorebook entries: recalled every turn."""
    fields = (
        (d.name, d.description if d.scenario.strip() else "", "data.description"),
        (f"{d.name}'s personality", d.personality, "data.personality"),
        (f"how {d.name} speaks", d.mes_example, "data.mes_example"),
    )
    return [
        LoreEntry(content=_fit(f"{label}: {text.strip()}", field), constant=True, name=label, insertion_order=order)
        for order, (label, text, field) in enumerate(fields)
        if text.strip()
    ]


def _lore(e: BookEntry, field: str) -> LoreEntry:
    return LoreEntry(
        keys=[k for k in e.keys if k.strip()],
        content=_fit(e.content, f"{field}.content"),
        insertion_order=e.insertion_order,
        constant=bool(e.constant),
        enabled=e.enabled,
        case_sensitive=bool(e.case_sensitive),
        name=e.name or e.comment,
    )


def _fit(text: str, field: str) -> str:
    if len(text) > LORE_CHARS:
        raise CardError(f"{field}: {len(text)} characters; a lorebook entry holds {LORE_CHARS}")
    return text


def _same(e: LoreEntry) -> tuple:
    """What makes a session's entry still the card's own (unchanged by an edit)."""
    return (tuple(e.keys), e.content, e.insertion_order, e.constant, e.enabled, e.case_sensitive)


def from_session(request: dict) -> Card:
    """A session's card: the one it was made from with its lorebook as it is now (an entry left unchanged
    is the card's own, every field of it kept), or a new one from the request (premise, protagonist,
    lorebook)."""
    lore = [LoreEntry.model_validate(e) for e in request.get("lorebook", [])]
    if request.get("card"):
        card = Card.model_validate(request["card"])
        d = card.data
        fields = {e.content for e in _field_lore(d)}
        originals = {_same(_lore(e, "")): e for e in (d.character_book.entries if d.character_book else [])}
        entries = [originals.get(_same(e)) or _book_entry(e) for e in lore if e.content not in fields]
        if entries or d.character_book:
            d.character_book = (d.character_book or CharacterBook()).model_copy(update={"entries": entries})
        return card
    cast = request.get("cast") or []
    data = CardData(
        name=cast[0]["name"] if cast else "The protagonist",
        scenario=request["premise"],
        personality=", ".join(cast[0].get("traits", [])) if cast else "",
        character_book=CharacterBook(entries=[_book_entry(e) for e in lore]) if lore else None,
    )
    return Card(spec="chara_card_v2", spec_version="2.0", data=data)


def _book_entry(e: LoreEntry) -> BookEntry:
    return BookEntry(
        keys=e.keys, content=e.content, enabled=e.enabled, insertion_order=e.insertion_order,
        case_sensitive=e.case_sensitive, constant=e.constant, name=e.name, id=e.id,
    )  # fmt: skip
