"""Types every layer shares: the story request and the story the engine returns.

The JSON form of `Story` is a contract other tools read (see docs/architecture.md): fields may be
added, never removed or renamed without bumping `SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from emotional_engine.arcs import Arc, get_arc
from emotional_engine.culture_tags import resolve_tag

SCHEMA_VERSION = "1.0"
EMOTIONS = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation", "neutral")
Emotion = Literal["joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation", "neutral"]
Audience = Literal["children", "teen", "adult"]


# a name or alias: at least one non-space character, outer spaces dropped (a blank alias matched
# everywhere and hung the character checker)
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CastMember(BaseModel):
    """A character the caller asks for; missing details are filled in by the character agent."""

    name: NonBlank = Field(max_length=80)
    role: str = Field("supporting", max_length=80)
    pronouns: str = Field("they/them", max_length=20)
    traits: list[str] = Field(default_factory=list, max_length=12)
    goals: list[str] = Field(default_factory=list, max_length=6)
    aliases: list[Annotated[NonBlank, Field(max_length=80)]] = Field(
        default_factory=list, max_length=12, description="nicknames and forms of address"
    )
    relationships: dict[str, str] = Field(
        default_factory=dict, description="other cast member -> what they are to this one"
    )


class LoreEntry(BaseModel):
    """World info (a lorebook entry, as character cards carry them): `content` is recalled into the story
    whenever one of `keys` appears in what is being written about, or always when `constant`."""

    id: int | None = Field(None, description="assigned when the entry joins a session's lorebook")
    keys: list[Annotated[NonBlank, Field(max_length=100)]] = Field(default_factory=list, max_length=32)
    content: NonBlank = Field(max_length=2000)
    insertion_order: int = Field(100, description="lower first, among the entries recalled together")
    constant: bool = Field(False, description="always recalled, keys or not")
    enabled: bool = True
    case_sensitive: bool = False
    name: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _reachable(self) -> LoreEntry:
        if not self.keys and not self.constant:
            raise ValueError("an entry needs keys, or constant: true (recalled always)")
        return self


# named sampler settings: `"sampling": "creative"` or `{"preset": "creative", "temperature": 0.9}`
SAMPLER_PRESETS: dict[str, dict[str, float]] = {
    "precise": {"temperature": 0.55, "top_p": 0.85, "repetition_penalty": 1.15},
    "balanced": {"temperature": 0.8, "top_p": 0.92, "repetition_penalty": 1.1},
    "creative": {"temperature": 1.0, "top_p": 0.95, "repetition_penalty": 1.08},
    "wild": {"temperature": 1.25, "top_p": 0.98, "repetition_penalty": 1.05},
}


class StorySampling(BaseModel):
    """The sampler settings a story request may set; the rest are the engine's. A preset's name alone, or
    a preset with some of its settings given (those win)."""

    preset: Literal["precise", "balanced", "creative", "wild"] | None = Field(
        None, description="named settings: precise, balanced (the defaults), creative, wild"
    )
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.92, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict) and data.get("preset") in SAMPLER_PRESETS:
            data = {**SAMPLER_PRESETS[data["preset"]], **data}
        return data


class StoryRequest(BaseModel):
    premise: str = Field(min_length=1, max_length=2000)
    arc: str | list[tuple[float, float]] = Field("man_in_a_hole", description="a named arc or 2-20 (t, valence) points")
    culture: str = Field("en-US", description="a supported BCP 47 tag")
    audience: Audience = "adult"
    words: int = Field(600, ge=50, le=20000)
    cast: list[CastMember] = Field(default_factory=list, max_length=20)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="same seed, same story (a 32-bit unsigned int)")
    language: str | None = Field(None, description="passed to backends that can write other languages")
    sampling: StorySampling = Field(default_factory=StorySampling)
    author_note: str | None = Field(
        None, max_length=1000, description="the author's note (sessions): in every turn's message, after the action"
    )
    lorebook: list[LoreEntry] = Field(
        default_factory=list, max_length=200, description="world info recalled when its keys come up (sessions)"
    )
    model: str | None = Field(
        None,
        max_length=64,
        description=(
            "a configured language model (GET /v1/models); default: the server's routing rules, then its default"
        ),
    )

    @field_validator("premise")
    @classmethod
    def _premise_has_text(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the premise is empty")
        return v

    @field_validator("culture")
    @classmethod
    def _known_culture(cls, v: str) -> str:
        return resolve_tag(v)  # the canonical tag, or ValueError naming the closest ones

    @model_validator(mode="after")
    def _valid_arc(self) -> StoryRequest:
        self.arc_curve()  # raises ValueError with what is wrong
        return self

    @model_validator(mode="after")
    def _lore_ids(self) -> StoryRequest:
        """Every lorebook entry gets an id (the next free one), so it can be changed or deleted by it."""
        ids = [e.id for e in self.lorebook if e.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("lorebook: two entries have the same id")
        next_id = 1 + max(ids, default=0)
        for e in self.lorebook:
            if e.id is None:
                e.id, next_id = next_id, next_id + 1
        return self

    def arc_curve(self) -> Arc:
        if isinstance(self.arc, str):
            return get_arc(self.arc)
        return Arc(points=self.arc)


class SceneTarget(BaseModel):
    valence: float = Field(ge=-1.0, le=1.0)
    emotion: Emotion


class Measurement(BaseModel):
    valence: float = Field(ge=-1.0, le=1.0)
    arousal: float = Field(ge=-1.0, le=1.0)
    emotion: Emotion
    scores: dict[str, float]


class SceneOutline(BaseModel):
    """A scene as the model planned it (agents/outline.py): where, who leads, what happens."""

    place: str
    lead: str  # a cast member's full name
    event: str  # one sentence

    def line(self) -> str:
        return f"at the {self.place}, {self.lead} leads: {self.event}"


class Scene(BaseModel):
    index: int
    text: str
    target: SceneTarget
    measured: Measurement | None = None
    outline: SceneOutline | None = None  # the model-written plan line it was written from; None: rule plan only


class Character(BaseModel):
    name: str
    role: str
    pronouns: str
    traits: list[str] = Field(default_factory=list)
    goals: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list, description="nicknames and forms of address that name this one")
    relationships: dict[str, str] = Field(
        default_factory=dict, description="other cast member -> what they are to this one (brother, rival)"
    )
    states: list[Emotion] = Field(default_factory=list, description="emotional state per scene")


class Quality(BaseModel):
    emotion_fit: float = Field(ge=0.0, le=1.0)
    character_consistency: float = Field(ge=0.0, le=1.0)
    cultural_fit: float = Field(ge=0.0, le=1.0)
    coherence: float = Field(ge=0.0, le=1.0)
    diversity: float = Field(ge=0.0, le=1.0)
    overall: float = Field(ge=0.0, le=1.0)
    reasons: list[str] = Field(default_factory=list)
    # how far the story is the one asked for (agents/adherence.py): relevance of the story to the
    # premise, and the mean relevance of each scene to its outline line; None where not measured
    premise_adherence: float | None = Field(None, ge=0.0, le=1.0)
    plan_adherence: float | None = Field(None, ge=0.0, le=1.0)
    # the model's geometric mean probability per token of the sentences shown (exp of their mean
    # log-probability); None where the backend gives no log-probabilities
    fluency: float | None = Field(None, ge=0.0, le=1.0)
    meta_rate: float | None = Field(None, ge=0.0, le=1.0, description="share of sentences about the writing")
    resampled_sentences: int | None = Field(None, ge=0, description="sentences written again before shown")


class ArcOut(BaseModel):
    name: str
    target: list[float] = Field(description="one valence in [-1, 1] per scene")


class Story(BaseModel):
    schema_version: str = SCHEMA_VERSION
    title: str
    text: str
    culture: str
    language: str
    arc: ArcOut
    scenes: list[Scene]
    characters: list[Character]
    quality: Quality
    safety: dict[str, object] = Field(default_factory=dict)
    degraded: list[str] = Field(default_factory=list, description="agents that failed or timed out")
    memory: dict[str, object] = Field(
        default_factory=dict,
        description=(
            "story memory: facts kept, sentences that contradicted it (rewritten or dropped before they were "
            "shown) and their rate per 1,000 words, "
            "each character's last known location and alive state, relations"
        ),
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)
    provenance: dict[str, object] = Field(default_factory=dict)
