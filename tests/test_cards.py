"""V2 character cards: read from JSON and PNG, refused with the field named, mapped onto a session's
request, and written back with every field they had (the spec's and others) after a session edits its
lorebook."""

import io
import json

import pytest
from PIL import Image

from card_samples import card_blob, png_with
from emotional_engine import cards
from emotional_engine.domain import LoreEntry, StoryRequest


def test_a_card_is_read_from_json_and_from_a_png():
    blob = card_blob()
    for raw in (json.dumps(blob).encode(), png_with(blob)):
        card = cards.read(raw)
        assert card.data.name == "Ines Varga" and card.data.character_book.entries[0].keys == ["Veil", "storm wall"]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.update(spec="chara_card_v3"), "spec"),
        (lambda b: b["data"].pop("name"), "data.name"),
        (lambda b: b["data"]["character_book"]["entries"][0].update(keys="Veil"), "data.character_book.entries.0.keys"),
        (lambda b: b["data"].update(tags="coast"), "data.tags"),
    ],
)
def test_a_card_that_fails_validation_names_the_field(change, field):
    blob = card_blob()
    change(blob)
    with pytest.raises(cards.CardError, match=f"^{field}:"):
        cards.read(json.dumps(blob).encode())


def test_what_is_not_a_card_says_so():
    with pytest.raises(cards.CardError, match="not JSON"):
        cards.read(b"hello")
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="PNG")
    with pytest.raises(cards.CardError, match="no character card in a 'chara' text chunk"):
        cards.read(out.getvalue())


def test_a_card_becomes_the_protagonist_premise_and_lorebook():
    fields = cards.session_fields(cards.read(json.dumps(card_blob()).encode()))
    request = StoryRequest(**{k: v for k, v in fields.items() if k != "card"})
    assert request.premise.startswith("Ines finds a letter") and "The letter was dry" in request.premise
    assert (request.cast[0].name, request.cast[0].role) == ("Ines Varga", "protagonist")
    assert request.cast[0].traits == ["stubborn", "tender", "dry humour"]
    constant = [e for e in request.lorebook if e.constant]
    assert [e.name for e in constant] == ["Ines Varga", "Ines Varga's personality", "how Ines Varga speaks"]
    veil = next(e for e in request.lorebook if e.keys)
    assert (veil.keys, veil.insertion_order, veil.name) == (["Veil", "storm wall"], 20, "the Veil")


def test_a_card_survives_the_round_trip_with_every_field_and_carries_the_sessions_edits():
    blob = card_blob()
    fields = cards.session_fields(cards.read(json.dumps(blob).encode()))
    request = {**StoryRequest(**{k: v for k, v in fields.items() if k != "card"}).model_dump(mode="json"),
               "card": fields["card"]}  # fmt: skip
    back = json.loads(cards.to_json(cards.from_session(request)))
    assert back == blob  # unchanged: every field, the spec's and the front end's
    assert (
        cards.read(cards.to_png(cards.from_session(request))).model_dump()
        == cards.read(json.dumps(blob).encode()).model_dump()
    )
    added = LoreEntry(id=99, keys=["Tomas"], content="Tomas is the brother.", insertion_order=30)
    request["lorebook"] = [*request["lorebook"], added.model_dump(mode="json")]
    edited = json.loads(cards.to_json(cards.from_session(request)))
    entries = edited["data"]["character_book"]["entries"]
    assert entries[0] == blob["data"]["character_book"]["entries"][0]  # the card's own entry, as it was
    assert entries[1]["keys"] == ["Tomas"] and entries[1]["content"] == "Tomas is the brother."
    request["lorebook"] = [e for e in request["lorebook"] if e["keys"] != ["Veil", "storm wall"]]
    assert [
        e["keys"] for e in json.loads(cards.to_json(cards.from_session(request)))["data"]["character_book"]["entries"]
    ] == [["Tomas"]]


def test_a_session_without_a_card_gets_a_new_one():
    ferry = [LoreEntry(keys=["ferry"], content="The ferry is old.")]
    cast = [{"name": "Ada", "traits": ["calm"]}]
    request = StoryRequest(premise="A ferry pilot finds a stowaway.", cast=cast, lorebook=ferry).model_dump(mode="json")
    card = cards.from_session(request)
    assert (card.data.name, card.data.scenario, card.data.personality) == ("Ada", request["premise"], "calm")
    assert card.data.character_book.entries[0].content == "The ferry is old."
    assert cards.read(cards.to_png(card)) == card


def test_a_minimal_card_comes_back_without_fields_it_did_not_have():
    data = {k: "" for k in ("description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
                            "system_prompt", "post_history_instructions", "creator", "character_version")}  # fmt: skip
    blob = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {**data, "name": "Ada", "alternate_greetings": [], "tags": [], "extensions": {},
                 "character_book": {"extensions": {}, "entries": [
                     {"keys": ["ferry"], "content": "The ferry is old.", "extensions": {}, "enabled": True,
                      "insertion_order": 0}]}},
    }  # fmt: skip
    fields = cards.session_fields(cards.read(json.dumps(blob).encode()))
    request = {**StoryRequest(**{k: v for k, v in fields.items() if k != "card"}).model_dump(mode="json"),
               "card": fields["card"]}  # fmt: skip
    assert json.loads(cards.to_json(cards.from_session(request))) == blob
