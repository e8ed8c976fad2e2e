"""Lorebook entries recalled when their keys come up: whole words, case, constant and disabled entries,
insertion order and the token budget."""

import pytest
from pydantic import ValidationError

from emotional_engine.domain import LoreEntry
from emotional_engine.memory.lorebook import triggered


def entry(content, *keys, **kw):
    return LoreEntry(keys=list(keys), content=content, **kw)


def test_an_entry_comes_up_when_one_of_its_keys_is_named_as_a_word():
    book = [entry("The Veil is a storm wall.", "veil", "storm wall"), entry("Mira keeps the light.", "Mira")]
    assert [e.content for e in triggered(book, "I walk towards the STORM WALL.")] == ["The Veil is a storm wall."]
    assert triggered(book, "Unveiling the miracle.") == []  # inside another word: no
    assert [e.content for e in triggered(book, "Mira, the veil!")] == [
        "The Veil is a storm wall.",
        "Mira keeps the light.",
    ]


def test_case_constant_disabled_order_and_budget():
    book = [
        entry("late", "Ash", insertion_order=50, case_sensitive=True),
        entry("always", constant=True, insertion_order=10),
        entry("never", "ash", enabled=False),
        entry("x " * 200, "ash", insertion_order=5),  # too long for the budget: left out, the rest still fit
    ]
    assert [e.content for e in triggered(book, "the ash fell", budget_tokens=60)] == ["always"]
    assert [e.content for e in triggered(book, "Ash fell", budget_tokens=60)] == ["always", "late"]


def test_an_entry_without_keys_must_be_constant():
    with pytest.raises(ValidationError, match="needs keys"):
        LoreEntry(content="floating")
    assert LoreEntry(content="always", constant=True).keys == []


def test_a_requests_entries_get_ids_and_duplicates_are_refused():
    from emotional_engine.domain import StoryRequest

    book = [entry("a", "x", id=4), entry("b", "y"), entry("c", "z")]
    assert [e.id for e in StoryRequest(premise="p", lorebook=book).lorebook] == [4, 5, 6]
    with pytest.raises(ValidationError, match="same id"):
        StoryRequest(premise="p", lorebook=[entry("a", "x", id=1), entry("b", "y", id=1)])
