"""Story-structure agent: from a request to a scene plan.

The number of scenes follows the length; the structure follows the culture (three-act, Freytag's
pyramid, kishōtenketsu with its turn in the third part, ...); each scene gets a goal, a
point-of-view character, the arc's target valence at its midpoint and a target emotion.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from emotional_engine.domain import Emotion, SceneOutline, SceneTarget, StoryRequest

WORDS_PER_SCENE = 150  # what the embedded 135M model keeps coherent in one go
MAX_SCENES = 120

# structure -> its parts, each (name, share of the story, what the part does)
STRUCTURES: dict[str, list[tuple[str, float, str]]] = {
    "three_act": [
        ("setup", 0.25, "introduce the protagonist, their world and what they want; end on the inciting incident"),
        ("confrontation", 0.5, "obstacles grow and the protagonist's choices cost something"),
        ("resolution", 0.25, "the central conflict comes to a head and is resolved"),
    ],
    "freytag": [
        ("exposition", 0.15, "establish the characters, the place and the situation"),
        ("rising_action", 0.3, "complications build the conflict"),
        ("climax", 0.15, "the turning point where fortunes change"),
        ("falling_action", 0.25, "consequences of the turning point unfold"),
        ("denouement", 0.15, "loose ends are tied and a new balance is found"),
    ],
    "kishotenketsu": [
        ("ki", 0.25, "introduce the characters and their everyday world, without conflict"),
        ("sho", 0.25, "develop that world and deepen what we know of the characters"),
        ("ten", 0.25, "an unexpected turn: something new, seemingly unrelated, changes how everything is seen"),
        ("ketsu", 0.25, "reconcile the turn with what came before; a quiet, harmonious conclusion"),
    ],
    "episodic": [
        ("opening", 0.2, "introduce the traveller or community and the reason for what follows"),
        ("episodes", 0.6, "a chain of encounters, each with its own small trial and lesson"),
        ("return", 0.2, "the journey closes and its lesson is stated or shown"),
    ],
    "oral_call_and_response": [
        ("call", 0.15, "the teller calls to the listeners and they answer; the tale is set up"),
        ("trial", 0.55, "the characters are tested, with sayings and songs marking each turn"),
        ("lesson", 0.3, "the outcome shows the lesson, and the teller hands the story back to the listeners"),
    ],
    "frame_tale": [
        ("frame", 0.15, "a narrator in one situation begins to tell a story"),
        ("inner_tale", 0.7, "the told story unfolds, with its own rise and turn"),
        ("frame_close", 0.15, "back in the frame, the tale's meaning lands on its listeners"),
    ],
    "heros_journey": [
        ("ordinary_world", 0.15, "the hero's ordinary world and the call to adventure"),
        ("threshold", 0.2, "refusal, a mentor, and crossing into the unknown"),
        ("ordeal", 0.35, "tests, allies and enemies; the greatest ordeal"),
        ("return", 0.3, "the reward, the road back and the return transformed"),
    ],
    "circular": [
        ("call", 0.2, "open in the teller's voice, setting the scene for listeners"),
        ("journey", 0.6, "events unfold and test the characters' wisdom and ties to others"),
        ("return", 0.2, "the story returns to where it began, changed, and closes with its lesson"),
    ],
}


class ScenePlan(BaseModel):
    index: int
    part: str
    goal: str
    pov: str | None
    words: int
    target: SceneTarget
    outline: SceneOutline | None = None  # written by the model from this skeleton (agents/outline.py)


class StoryPlan(BaseModel):
    structure: str
    arc_name: str
    scenes: list[ScenePlan] = Field(min_length=1)
    written_by: Literal["rules", "model", "mixed"] = "rules"  # who wrote the scenes' outlines: none, all, some


def scene_count(words: int) -> int:
    return max(1, min(MAX_SCENES, round(words / WORDS_PER_SCENE)))


def target_emotion(valence: float, slope: float, part: str) -> Emotion:
    """A target emotion from where the arc is (valence) and where it is going (slope per story)."""
    if part in ("ten", "climax") and abs(slope) > 0.5:
        return "surprise"
    if valence > 0.35:
        return "joy" if slope >= -0.3 else "trust"
    if valence < -0.35:
        return "fear" if slope < -0.3 else "sadness"
    if slope > 0.3:
        return "anticipation"
    if slope < -0.3:
        return "fear"
    return "trust" if valence >= 0 else "sadness"


def plan_story(request: StoryRequest, structure: str, pov_names: list[str] | None = None) -> StoryPlan:
    """The scene plan; `structure` is one of STRUCTURES (unknown ones fall back to three-act)."""
    parts = STRUCTURES.get(structure) or STRUCTURES["three_act"]
    structure = structure if structure in STRUCTURES else "three_act"
    arc = request.arc_curve()
    n = scene_count(request.words)
    bounds, total = [], 0.0
    for name, share, goal in parts:
        total += share
        bounds.append((total, name, goal))
    scenes = []
    per_scene = max(1, round(request.words / n))
    for i in range(n):
        t = (i + 0.5) / n
        _, part, goal = next(b for b in bounds if t <= b[0] + 1e-9)
        valence = float(arc.valence(t))
        h = 0.5 / n
        slope = (float(arc.valence(min(1.0, t + h))) - float(arc.valence(max(0.0, t - h)))) / (2 * h)
        pov = pov_names[i % len(pov_names)] if pov_names else None
        scenes.append(
            ScenePlan(
                index=i,
                part=part,
                goal=goal,
                pov=pov,
                words=per_scene,
                target=SceneTarget(valence=round(valence, 4), emotion=target_emotion(valence, slope, part)),
            )
        )
    return StoryPlan(structure=structure, arc_name=arc.name, scenes=scenes)
