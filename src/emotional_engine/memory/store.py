"""A story's memory: its facts with MiniLM embeddings, and a character graph (networkx).

Retrieval scores each stored fact against a query by cosine similarity, plus a bonus for being
recent and one for naming the same characters or things, and returns the best ones that fit a
token budget, in story order. The graph holds each character's last known location and whether
they are alive, and the relations between characters. Everything round-trips through a plain
dict (JSON-safe) so sessions and jobs can be saved and resumed.

Embedding calls are the caller's `embed(texts) -> (N, D)` unit vectors; they are torch work, so
async callers run memory methods that embed through `threads.run_model`.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np

from emotional_engine.domain import Character
from emotional_engine.memory.facts import CastIndex, Fact
from emotional_engine.text import estimate_tokens

RECENCY_WEIGHT = 0.15  # bonus for a fact from the latest scene, decaying with age
RECENCY_SCENES = 8.0  # scenes over which the recency bonus falls to 1/e
ENTITY_WEIGHT = 0.25  # bonus when the query names everything the fact names
STORED_KINDS = ("event", "location", "state", "relation", "attribute", "knows", "place", "object")

Embed = Callable[[list[str]], np.ndarray]


class StoryMemory:
    def __init__(self, cast: list[Character], embed: Embed | None = None):
        self.embed = embed
        self.reset(cast)

    def reset(self, cast: list[Character]) -> None:
        """Forget everything and start over with this cast."""
        self.cast = list(cast)
        self.facts: list[Fact] = []
        self.vectors = np.zeros((0, 0), dtype=np.float32)  # (N, D), row i is facts[i]
        self.graph = nx.DiGraph()
        self.scene = -1  # the latest scene remembered
        self._index = CastIndex(self.cast)
        for c in self.cast:
            self.graph.add_node(
                c.name, kind="character", location=None, location_scene=None, alive=True, died_scene=None
            )
        for c in self.cast:
            for other, relation in c.relationships.items():
                if other in self.graph:
                    self.graph.add_edge(c.name, other, relation=relation, scene=None)

    # ---- writing ---------------------------------------------------------------------------

    def embed_facts(self, facts: list[Fact]) -> np.ndarray:
        if not facts:
            return np.zeros((0, self.vectors.shape[1] if self.vectors.size else 0), dtype=np.float32)
        if self.embed is None:
            raise RuntimeError("this memory has no embedder: pass embed= to StoryMemory")
        return np.asarray(self.embed([f.text for f in facts]), dtype=np.float32)

    def add(self, facts: list[Fact], vectors: np.ndarray | None = None) -> None:
        """Store facts (actions are only for checks and are dropped) and update the graph."""
        keep = [i for i, f in enumerate(facts) if f.kind in STORED_KINDS]
        facts = [facts[i] for i in keep]
        if not facts:
            return
        vectors = self.embed_facts(facts) if vectors is None else np.asarray(vectors, dtype=np.float32)[keep]
        self.vectors = vectors if not self.vectors.size else np.vstack([self.vectors, vectors])
        self.facts += facts
        for f in facts:
            self.scene = max(self.scene, f.scene)
            self._apply(f)

    def forget(self, i: int) -> Fact:
        """Drop fact `i` (a reader's correction); the character graph is rebuilt from the facts that remain."""
        gone = self.facts[i]
        self._keep_only([j != i for j in range(len(self.facts))])
        return gone

    def forget_scene(self, scene: int) -> None:
        """Drop every fact from `scene` (its beat was written again)."""
        self._keep_only([f.scene != scene for f in self.facts])

    def _keep_only(self, keep: list[bool]) -> None:
        facts = [f for f, k in zip(self.facts, keep, strict=True) if k]
        vectors = self.vectors[np.asarray(keep, dtype=bool)] if self.facts else self.vectors
        scene = self.scene
        self.reset(self.cast)
        self.facts, self.vectors, self.scene = facts, vectors, scene
        for f in facts:
            self._apply(f)

    def revise(self, i: int, text: str) -> Fact:
        """Fact `i` reads `text` now (re-embedded): what is recalled and shown in prompts. Its structured
        parts (subject, value) stay; to undo one of those, forget the fact."""
        revised = self.facts[i].model_copy(update={"text": text})
        self.facts[i] = revised
        self.vectors[i] = self.embed_facts([revised])[0]
        return revised

    def _apply(self, f: Fact) -> None:
        if f.subject not in self.graph:
            return
        node = self.graph.nodes[f.subject]
        if f.kind == "location":
            node.update(location=f.value, location_scene=f.scene)
        elif f.kind == "state" and f.value == "dead" and node["alive"]:
            node.update(alive=False, died_scene=f.scene)
        elif f.kind == "relation":
            other = f.attribute.split(":", 1)[1]
            if other in self.graph:
                self.graph.add_edge(f.subject, other, relation=f.value, scene=f.scene)

    # ---- reading ---------------------------------------------------------------------------

    def character(self, name: str) -> dict:
        return dict(self.graph.nodes[name])

    def relations(self) -> list[tuple[str, str, str]]:
        return [(a, b, d["relation"]) for a, b, d in self.graph.edges(data=True)]

    def character_states(self) -> list[str]:
        """One line per character with what memory knows of them now, for prompts."""
        lines = []
        for c in self.cast:
            n = self.graph.nodes[c.name]
            bits = []
            if not n["alive"]:
                bits.append(f"died in scene {n['died_scene'] + 1}; does not act any more")
            elif n["location"]:
                bits.append(f"last seen at the {n['location']}")
            rel = [f"{d['relation']} of {b}" for _, b, d in self.graph.out_edges(c.name, data=True)]
            bits += rel
            if bits:
                lines.append(f"{c.name}: {'; '.join(bits)}")
        return lines

    def relevant(
        self,
        query_text: str,
        k: int = 8,
        budget_tokens: int = 300,
        count_tokens: Callable[[str], int] = estimate_tokens,
    ) -> list[Fact]:
        """The k best facts for the query that fit in budget_tokens, in story order."""
        if not self.facts or k <= 0 or budget_tokens <= 0:
            return []
        if self.embed is None:
            raise RuntimeError("this memory has no embedder: pass embed= to StoryMemory")
        q = np.asarray(self.embed([query_text]), dtype=np.float32)[0]
        scores = self.scores(q, set(self._index.mentioned(query_text)) | _words(query_text))
        chosen, used, seen = [], 0, set()
        for i in np.argsort(-scores, kind="stable"):
            f = self.facts[i]
            if f.text in seen:
                continue
            cost = count_tokens(f.text) + 2  # "- " and a newline
            if used + cost > budget_tokens:
                continue
            chosen.append(i)
            seen.add(f.text)
            used += cost
            if len(chosen) == k:
                break
        return [self.facts[i] for i in sorted(chosen, key=lambda i: (self.facts[i].scene, i))]

    def scores(self, q: np.ndarray, query_entities: set[str]) -> np.ndarray:
        cos = self.vectors @ q
        age = np.array([self.scene - f.scene for f in self.facts], dtype=np.float32)
        recency = RECENCY_WEIGHT * np.exp(-age / RECENCY_SCENES)
        overlap = np.array(
            [len(query_entities & set(f.entities)) / max(1, len(f.entities)) for f in self.facts], dtype=np.float32
        )
        return cos + recency + ENTITY_WEIGHT * overlap

    # ---- saving ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "version": 1,
            "cast": [c.model_dump() for c in self.cast],
            "scene": self.scene,
            "facts": [f.model_dump() for f in self.facts],
            "vectors": _rows(self.vectors),
            "graph": nx.node_link_data(self.graph, edges="edges"),
        }

    def part(self, scene: int) -> dict:
        """The facts from one scene with their vectors (JSON-safe): what a store keeps beside that scene's
        beat; `add_part` takes it back in."""
        rows = [i for i, f in enumerate(self.facts) if f.scene == scene]
        return {"facts": [self.facts[i].model_dump() for i in rows], "vectors": _rows(self.vectors[rows])}

    def add_part(self, part: dict) -> None:
        facts = [Fact(**f) for f in part["facts"]]
        if facts:
            self.add(facts, np.asarray(part["vectors"], dtype=np.float32).reshape(len(facts), -1))

    @classmethod
    def from_dict(cls, data: dict, embed: Embed | None = None) -> StoryMemory:
        if data.get("version") != 1:
            raise ValueError(f"unknown story-memory format {data.get('version')!r}; expected 1")
        m = cls([Character(**c) for c in data["cast"]], embed)
        m.scene = data["scene"]
        m.facts = [Fact(**f) for f in data["facts"]]
        m.vectors = np.asarray(data["vectors"], dtype=np.float32).reshape(len(m.facts), -1)
        m.graph = nx.node_link_graph(data["graph"], edges="edges")
        return m


def _rows(vectors: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 6) for x in row] for row in vectors]


def _words(text: str) -> set[str]:
    """Lowercase words of the query, so things ("the lantern") match fact entities too."""
    return {w.strip(".,;:!?\"'()").lower() for w in text.split()} | {
        w.strip(".,;:!?\"'()") for w in text.split() if w[:1].isupper()
    }
