"""A lorebook (world info): the entries whose keys come up in the text at hand, as SillyTavern and the
character card spec use them. A key matches as whole words (case-insensitive unless the entry says
otherwise); constant entries always match; disabled ones never. The matches come in insertion order,
within a token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from emotional_engine.domain import LoreEntry
from emotional_engine.text import estimate_tokens


def _matches(entry: LoreEntry, text: str) -> bool:
    flags = 0 if entry.case_sensitive else re.IGNORECASE
    return any(re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text, flags) for key in entry.keys)


def triggered(
    entries: Sequence[LoreEntry],
    text: str,
    budget_tokens: int = 300,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> list[LoreEntry]:
    """The enabled entries that are constant or whose keys appear in `text`, by insertion order (then
    their order in the book), as many as fit in `budget_tokens`."""
    hits = [e for e in entries if e.enabled and (e.constant or _matches(e, text))]
    out, used = [], 0
    for e in sorted(hits, key=lambda e: e.insertion_order):  # stable: ties keep the book's order
        cost = count_tokens(e.content) + 2
        if used + cost <= budget_tokens:
            out.append(e)
            used += cost
    return out
