"""A planted contradiction is caught against the story memory, sentence by sentence as the scene
streams, and repaired by a rewrite of that sentence (or dropped)."""

import re

from emotional_engine.agents.orchestrator import write_story
from emotional_engine.agents.run import Deps
from emotional_engine.domain import CastMember, StoryRequest
from emotional_engine.memory import StoryMemory
from fakes import FakeEmotion, FakeGenerator, ModelInfo, bow_embed

CAST = [
    CastMember(name="Ada Obi", role="protagonist", pronouns="she/her"),
    CastMember(name="Kofi Mensah", role="ally", pronouns="he/him"),
]


def planting(first: str, contradicting: str, repaired: str) -> FakeGenerator:
    """Scene 1 establishes facts; scene 2's draft contradicts one unless told about it; a flagged
    sentence is rewritten as `repaired`. Summaries come back empty: the fallback is used."""

    def write(call):
        text = first if "Write scene 1 " in call.user else contradicting
        asked = int(re.search(r"about (\d+) words", call.user).group(1))
        return text + " The joy of it stayed." * (asked // 10 + 1)  # over half the words asked

    return FakeGenerator(
        write=write,
        reply=lambda call: "" if is_summary(call) else repaired,
        info=ModelInfo("fake", "fake", context_length=2048),
    )


def is_summary(call):
    return call.system.startswith("You summarise")


def rewrite_prompts(gen):
    """The flagged sentences' rewrite prompts."""
    return [c.user for c in gen.completions if not is_summary(c)]


def request():
    return StoryRequest(
        premise="A brother and sister keep the harbour light.", words=300, seed=3, cast=CAST, arc="rags_to_riches"
    )


async def run(gen):
    memory = StoryMemory([])
    story = await write_story(
        request(), Deps(generator=gen, emotion=FakeEmotion(), embed=bow_embed, candidates=2), memory=memory
    )
    return story, memory


async def test_an_object_that_changes_colour_is_rewritten():
    gen = planting(
        "Ada Obi carried the red lantern to the harbour. She hung the red lantern up in joy.",
        "Ada took down the blue lantern in joy.",
        "Ada took down the red lantern in joy.",
    )
    story, memory = await run(gen)
    assert len(story.scenes) == 2
    assert "red lantern" in story.scenes[1].text and "blue" not in story.scenes[1].text
    repair_prompt = rewrite_prompts(gen)[0]
    assert "The lantern is red." in repair_prompt and "blue" in repair_prompt  # the contradiction is named
    assert story.memory["contradictions_found"] == 1
    assert any(r.startswith("scene 2: memory: rewrote") for r in story.quality.reasons)
    assert any(f.kind == "event" for f in memory.facts)  # the salient-sentence fallback wrote the events


async def test_a_dead_character_who_acts_is_rewritten():
    gen = planting(
        "Kofi Mensah died in the storm in joy. Ada wept at the harbour.",
        "Kofi laughed at the harbour in joy.",
        "Ada remembered how Kofi laughed, and found joy.",
    )
    story, memory = await run(gen)
    assert "Kofi laughed at the harbour" not in story.scenes[1].text
    # the character checker, which runs before the memory check, knows the dead too
    assert any(r.startswith(("scene 2: character:", "scene 2: memory:")) and "Kofi" in r for r in story.quality.reasons)
    assert story.memory["characters"]["Kofi Mensah"]["alive"] is False


async def test_a_contradiction_the_rewrite_cannot_fix_is_dropped_and_counted():
    gen = planting(
        "Ada Obi carried the red lantern in joy.",
        "Ada lit the blue lantern in joy.",
        "Ada lit the blue lantern in joy.",
    )
    story, _ = await run(gen)
    words = len(story.text.split())
    assert "blue lantern" not in story.text and len(rewrite_prompts(gen)) == 2  # two tries, then it goes
    assert story.memory["contradictions_found"] == 1
    assert story.memory["contradictions_found_per_1000_words"] == round(1000 / words, 3)
    assert any(r.startswith("scene 2: memory: dropped") for r in story.quality.reasons)


async def test_scene_prompts_recall_facts_and_stay_within_the_context():
    gen = planting(
        "Ada Obi carried the red lantern to the harbour in joy.", "Ada waited at the harbour in joy.", "unused"
    )
    await run(gen)
    second = gen.streams[-1].user
    assert "Established earlier in the story" in second and "The lantern is red." in second
    assert "Ada Obi: last seen at the harbour" in second


def test_scene_messages_fit_the_budget_whatever_the_story_length():
    import itertools

    from emotional_engine.agents.emotional_intelligence import guidance
    from emotional_engine.agents.prompts import TEMPLATE_TOKENS, scene_messages
    from emotional_engine.agents.story import plan_story
    from emotional_engine.culture import load_profile
    from emotional_engine.domain import Character
    from emotional_engine.text import estimate_tokens

    req = request().model_copy(update={"words": 10000})
    profile = load_profile(req.culture)
    cast = [Character(name=c.name, role=c.role, pronouns=c.pronouns) for c in CAST]
    plan = plan_story(req, profile.story.structure, ["Ada Obi"])
    sp = plan.scenes[40]
    story = " ".join(f"Sentence number {i} of a very long story." for i in range(8000))
    facts = [f"Fact {i}: Ada kept lantern {i} by the door." for i in range(200)]
    for style, budget in itertools.product(("task", "continuation"), (900, 1500, 4000)):
        msgs = scene_messages(
            style,
            req,
            profile,
            plan,
            cast,
            sp,
            guidance(sp.target, 0.8),
            story,
            facts=facts,
            states=["Ada Obi: last seen at the harbour"],
            budget=budget,
        )
        used = sum(estimate_tokens(m["content"]) for m in msgs) + TEMPLATE_TOKENS * len(msgs) // 2
        assert used <= budget, (style, budget, used)
        user, last = msgs[1]["content"], msgs[-1]["content"]
        assert "Sentence number 7999 of a very long story." in last  # the most recent text is kept
        assert "Fact 0:" in user
        if style == "task":
            assert f"Write scene 41 of {len(plan.scenes)}" in user
        else:  # the reply is begun with the story so far, and the user message directs the scene
            assert msgs[-1]["role"] == "assistant" and f"Now part 41 of {len(plan.scenes)}" in user
