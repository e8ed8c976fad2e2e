"""Level 1 of hierarchical generation: the model-written outline always parses, and falls back to
the rule plan where the backend cannot constrain."""

import re

import pytest

from emotional_engine.agents import outline
from emotional_engine.agents.outline import drift_note, followed, parse, write_outline
from emotional_engine.agents.story import plan_story
from emotional_engine.domain import SceneOutline, StoryRequest
from emotional_engine.memory import Fact, StoryMemory
from fakes import CAST, YO, FakeGenerator, bow_embed, random_logits

LEADS = [c.name for c in CAST]


def _plan(words: int):
    req = StoryRequest(premise="A weaver's daughter finds her lost brother.", words=words, culture="yo-NG", seed=2)
    return req, plan_story(req, YO.story.structure, [CAST[0].name])


@pytest.mark.parametrize("seed", range(4))
async def test_random_logits_through_the_constraint_always_give_a_whole_outline(tokenizer, seed):
    req, plan = _plan(1500)  # 10 scenes
    gen = FakeGenerator(reply=random_logits(tokenizer), tokenizer=tokenizer)
    written = await write_outline(gen, req, YO, plan, CAST, seed)
    assert written.written_by == "model" and len(gen.completions) == -(-10 // outline.OUTLINE_CHUNK)
    for before, after in zip(plan.scenes, written.scenes):
        o = after.outline
        assert o is not None and o.lead in LEADS and o.place and o.event.endswith(".")
        assert after.model_copy(update={"outline": None}) == before  # the skeleton stays as the rules made it
    last = gen.completions[-1].prompt[1]["content"]
    assert "Scene 10 (" in last and "scenes 9 to 10" in last


async def test_a_backend_without_logits_processors_keeps_the_rule_plan():
    req, plan = _plan(450)
    gen = FakeGenerator("Scene 1 | place: x")
    assert await write_outline(gen, req, YO, plan, CAST, 1) is plan and plan.written_by == "rules"
    assert gen.calls == []


async def test_a_generation_that_stops_early_leaves_its_remaining_scenes_to_the_rules(tokenizer):
    req, plan = _plan(450)  # 3 scenes; the first generation writes scenes 1 and 2
    one_line = outline.max_line_bytes(2, LEADS)  # at least the first line is done by then
    gen = FakeGenerator(reply=random_logits(tokenizer, fail_after=one_line), tokenizer=tokenizer)
    written = await write_outline(gen, req, YO, plan, CAST, 3)
    got = [s.outline is not None for s in written.scenes]
    assert got[0] and not got[1] and written.written_by == "mixed"


def test_parse_reads_whole_lines_only():
    text = (
        f"Scene 1 | place: old market | lead: {LEADS[1]} | event: Chidi sells the loom to a stranger.\n"
        f"Scene 2 | place: riv"
    )
    first, second = parse(text, range(2), LEADS)
    assert first == SceneOutline(place="old market", lead=LEADS[1], event="Chidi sells the loom to a stranger.")
    assert second is None
    assert re.fullmatch(outline.line_pattern(0, LEADS), text.splitlines(keepends=True)[0])


def test_a_scene_that_strays_from_its_outline_hands_the_memorys_account_to_the_next():
    _, plan = _plan(450)
    sc = plan.scenes[0].model_copy(
        update={"outline": SceneOutline(place="old market", lead=LEADS[1], event="Chidi sells the loom.")}
    )
    memory = StoryMemory(CAST, bow_embed)
    memory.add([Fact(scene=0, kind="event", text="Amara Okafor sailed to the island alone.")])
    kept = "Chidi Okafor walked into the market with the loom on his back."
    strayed = "Amara Okafor sailed to the island alone."
    assert followed(sc.outline, kept, CAST) and drift_note(sc, kept, CAST, memory) is None
    assert not followed(sc.outline, strayed, CAST)
    note = drift_note(sc, strayed, CAST, memory)
    assert note.startswith("Scene 1 went otherwise than planned") and "sailed to the island alone" in note


@pytest.mark.model
async def test_the_embedded_model_writes_a_parseable_outline(fp32_generator):
    req, plan = _plan(150)  # 1 scene: the real model is slow here
    written = await write_outline(fp32_generator, req, YO, plan, CAST, 4)
    assert written.written_by == "model"
    assert all(s.outline.lead in LEADS and len(s.outline.event.split()) >= 2 for s in written.scenes)
