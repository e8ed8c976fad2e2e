"""Does a new scene contradict what the story has established? The rule, kept simple:

- the same entity and attribute with a different value, for attributes that do not change by
  themselves: a thing's colour, the relation between two characters;
- a character who died in an earlier scene acts (see facts.py for what counts as acting);
- a character's first location in the new scene differs from the last known one while the scene
  never has them move (went, walked, arrived, ...): people do not teleport between scenes.

When several earlier facts share the entity and attribute, the one named is the most similar to
the new fact by embedding (cosine), so the repair prompt quotes the fact the scene is closest to.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from emotional_engine.memory.facts import MOVE_VERBS, Fact
from emotional_engine.memory.store import StoryMemory

STABLE = ("colour",)  # attributes compared value to value (relations are matched by their "relation:" prefix)


class Contradiction(BaseModel):
    new: Fact
    earlier: Fact | None
    reason: str

    def note(self) -> str:
        """What the repair prompt tells the model to keep to."""
        was = self.earlier.text if self.earlier else ""
        reason = self.reason[:1].upper() + self.reason[1:]
        return f"{was} (The draft said instead: {self.new.text}) {reason}".strip()


def find_contradictions(memory: StoryMemory, new: list[Fact], vectors: np.ndarray | None = None) -> list[Contradiction]:
    """Contradictions between a scene's facts (`new`, with their embeddings) and earlier scenes'."""
    out: list[Contradiction] = []
    moved = {f.subject for f in new if f.kind == "action" and f.value in MOVE_VERBS}
    seen_location: set[str] = set()
    for j, f in enumerate(new):
        vec = None if vectors is None else vectors[j]
        if f.kind == "attribute" and f.attribute in STABLE or f.kind == "relation":
            earlier = [
                (i, e)
                for i, e in enumerate(memory.facts)
                if e.subject == f.subject and e.attribute == f.attribute and e.scene < f.scene
            ]
            clash = [(i, e) for i, e in earlier if e.value != f.value]
            if clash and not any(e.value == f.value for _, e in earlier):
                e = _closest(memory, clash, vec)
                out.append(Contradiction(new=f, earlier=e, reason=f"{_what(f)} was {e.value}, not {f.value}."))
        elif f.kind == "action" and f.subject in memory.graph:
            node = memory.graph.nodes[f.subject]
            if not node["alive"] and node["died_scene"] < f.scene:
                death = next(e for e in memory.facts if e.subject == f.subject and e.kind == "state")
                out.append(
                    Contradiction(
                        new=f,
                        earlier=death,
                        reason=f"{f.subject} is dead and cannot act; mention them only as remembered.",
                    )
                )
        elif f.kind == "location" and f.subject in memory.graph and f.subject not in seen_location:
            seen_location.add(f.subject)
            node = memory.graph.nodes[f.subject]
            if node["location"] and node["location"] != f.value and f.subject not in moved and node["alive"]:
                earlier = [
                    (i, e)
                    for i, e in enumerate(memory.facts)
                    if e.subject == f.subject and e.kind == "location" and e.value == node["location"]
                ]
                e = _closest(memory, earlier, vec) if earlier else None
                out.append(
                    Contradiction(
                        new=f,
                        earlier=e,
                        reason=(
                            f"{f.subject} was last at the {node['location']}; show them going to the {f.value} "
                            "or keep them where they were."
                        ),
                    )
                )
    return _unique(out)


def _what(f: Fact) -> str:
    if f.kind == "relation":
        return f"{f.subject}'s relation to {f.attribute.split(':', 1)[1]}"
    return f"the {f.subject}'s {f.attribute}"


def _closest(memory: StoryMemory, facts: list[tuple[int, Fact]], vec: np.ndarray | None) -> Fact:
    """Of (row, fact) pairs, the fact whose embedding is nearest `vec` (the latest without one)."""
    if vec is None or not memory.vectors.size:
        return facts[-1][1]
    rows = [i for i, _ in facts]
    return facts[int(np.argmax(memory.vectors[rows] @ vec))][1]


def _unique(cs: list[Contradiction]) -> list[Contradiction]:
    seen, out = set(), []
    for c in cs:
        key = (c.new.subject, c.new.attribute, c.new.value)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def per_1000_words(count: int, words: int) -> float:
    return 0.0 if words <= 0 else 1000.0 * count / words


def audit(scenes: list[str], cast, embed) -> list[Contradiction]:
    """Re-read a finished story scene by scene against a fresh memory (rule facts only, no model
    summaries) and list every contradiction: the story's plot-consistency measure."""
    from emotional_engine.memory.facts import extract_facts

    memory = StoryMemory(cast, embed)
    found: list[Contradiction] = []
    for i, text in enumerate(scenes):
        facts = extract_facts(text, i, cast)
        if not facts:
            continue
        vectors = memory.embed_facts(facts)
        if memory.facts:
            found += find_contradictions(memory, facts, vectors)
        memory.add(facts, vectors)
    return found
