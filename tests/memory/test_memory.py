"""Story memory: fact extraction rules, retrieval, the character graph, persistence, contradictions."""

import json

import numpy as np
import pytest

from emotional_engine.domain import Character
from emotional_engine.memory import StoryMemory, extract_facts, find_contradictions
from emotional_engine.memory.scene import clean_summary, salient_sentences
from fakes import bow_embed

CAST = [
    Character(name="Ada Obi", role="protagonist", pronouns="she/her"),
    Character(name="Kofi Mensah", role="ally", pronouns="he/him"),
]

SCENE = (
    "The rain fell on the town. Ada walked to the old market with the red lantern. Kofi, Ada's brother, "
    "waited at the bridge. Ada learned that the bridge was gone. She held the lantern high near Lagos Harbour."
)


def kinds(facts):
    return {(f.kind, f.subject, f.value) for f in facts}


def test_rules_find_locations_relations_knowledge_colours_and_introduced_things():
    facts = extract_facts(SCENE, 0, CAST)
    k = kinds(facts)
    assert ("location", "Ada Obi", "market") in k and ("location", "Kofi Mensah", "bridge") in k
    assert ("relation", "Kofi Mensah", "brother") in k
    assert ("attribute", "lantern", "red") in k
    assert ("knows", "Ada Obi", "the bridge was gone") in k
    assert ("place", "Lagos", None) in k and ("object", "lantern", None) in k and ("object", "bridge", None) in k
    assert not any(f.subject in ("Ada", "Kofi", "Ada's") for f in facts if f.kind == "place")  # cast, not places
    assert not [f for f in extract_facts("Ada was happy at the news.", 0, CAST) if f.kind == "location"]
    odd = extract_facts("Then he said, I'll go. They met El Maríz by the sea.", 0, CAST)
    assert {f.subject for f in odd if f.kind == "place"} == {"Maríz"}
    assert all(f.scene == 0 for f in facts)


def test_remembering_is_not_acting_and_death_is_a_state():
    facts = extract_facts("Kofi died in the flood. Ada remembered how Kofi laughed. Ada wept.", 1, CAST)
    k = kinds(facts)
    assert ("state", "Kofi Mensah", "dead") in k
    assert ("action", "Ada Obi", "wept") in k
    assert not any(f.kind == "action" and f.subject == "Kofi Mensah" for f in facts)


def test_graph_keeps_last_location_death_and_relations():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    m.add(extract_facts("Ada ran to the harbour. Kofi died at the bridge.", 1, CAST))
    assert m.character("Ada Obi")["location"] == "harbour"
    assert m.character("Kofi Mensah")["alive"] is False and m.character("Kofi Mensah")["died_scene"] == 1
    assert ("Kofi Mensah", "Ada Obi", "brother") in m.relations()
    states = "\n".join(m.character_states())
    assert "Kofi Mensah: died in scene 2" in states and "Ada Obi: last seen at the harbour" in states
    assert not any(f.kind == "action" for f in m.facts)  # actions are for checks only


def test_retrieval_prefers_similar_facts_and_respects_k_and_budget():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    for i in range(1, 30):
        m.add(extract_facts(f"Ada sat in the kitchen number {i}. The kettle sang and the kettle cooled.", i, CAST))
    got = m.relevant("Where is the red lantern?", k=3, budget_tokens=200)
    assert len(got) <= 3 and any("lantern is red" in f.text for f in got)
    assert [f.scene for f in got] == sorted(f.scene for f in got)  # story order
    small = m.relevant("Where is the red lantern?", k=10, budget_tokens=12)
    assert sum(len(f.text) // 4 + 3 for f in small) <= 12 and small
    assert m.relevant("anything", k=0) == [] and StoryMemory(CAST, bow_embed).relevant("x") == []


def test_memory_round_trips_through_json():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    m.add(extract_facts("Kofi died at the bridge.", 1, CAST))
    back = StoryMemory.from_dict(json.loads(json.dumps(m.to_dict())), bow_embed)
    assert [f.text for f in back.facts] == [f.text for f in m.facts]
    assert np.allclose(back.vectors, m.vectors, atol=1e-5)
    assert back.character("Kofi Mensah")["alive"] is False and back.relations() == m.relations()
    assert [f.text for f in back.relevant("lantern", 2)] == [f.text for f in m.relevant("lantern", 2)]
    with pytest.raises(ValueError, match="format"):
        StoryMemory.from_dict({"version": 9})


def test_a_memory_without_an_embedder_says_so():
    m = StoryMemory(CAST)
    with pytest.raises(RuntimeError, match="embedder"):
        m.add(extract_facts(SCENE, 0, CAST))


@pytest.mark.parametrize(
    "later, why",
    [
        ("Ada walked to the bridge with the blue lantern.", "lantern's colour was red"),
        ("Ada, Kofi's sister, smiled. Kofi was Ada's cousin.", "relation to Ada Obi was brother"),
        ("Kofi laughed at the harbour.", "is dead"),
        ("Ada sat in the temple.", "last at the market"),
    ],
)
def test_each_kind_of_contradiction_is_caught(later, why):
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    if "laughed" in later:
        m.add(extract_facts("Kofi died at the bridge.", 1, CAST))
    new = extract_facts(later, 2, CAST)
    found = find_contradictions(m, new, m.embed_facts(new))
    assert any(why in c.reason for c in found), [c.reason for c in found]
    assert all(c.earlier is not None for c in found if "last at" not in c.reason)


def test_consistent_scenes_are_not_flagged():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    for later in [
        "Ada walked to the temple and lit the red lantern.",
        "Ada stayed at the market. Kofi waited.",
        "Ada remembered the harbour. The sky was grey, then the blue sky returned.",
    ]:
        new = extract_facts(later, 1, CAST)
        assert find_contradictions(m, new, m.embed_facts(new)) == [], later


def test_summary_cleaning_and_salient_fallback():
    assert clean_summary("Summary: Ada found the key. Kofi left the town. Then they") == [
        "Ada found the key.",
        "Kofi left the town.",
    ]
    assert clean_summary("") == [] and clean_summary("Here is a summary of the scene:") == []
    assert clean_summary("<scene> Ada ran home. </scene>") == ["Ada ran home."]
    text = "The key lay under the stone. Ada found the key under the stone. Birds sang. Ada kept the key."
    assert salient_sentences(text, bow_embed, 2) == [
        "The key lay under the stone.",
        "Ada found the key under the stone.",
    ]


def test_audit_counts_contradictions_across_a_finished_story():
    from emotional_engine.memory import audit

    scenes = [SCENE, "Ada lit the blue lantern at the market.", "Kofi died at the bridge.", "Kofi smiled at Ada."]
    found = audit(scenes, CAST, bow_embed)
    assert sorted(c.new.kind for c in found) == ["action", "attribute"]
    assert audit([SCENE, "Ada lit the red lantern at the market."], CAST, bow_embed) == []


def test_a_forgotten_fact_is_gone_from_recall_and_from_the_graph_and_a_revised_one_reads_anew():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    m.add(extract_facts("Ada ran to the harbour. Kofi died at the bridge.", 1, CAST))
    death = next(i for i, f in enumerate(m.facts) if f.kind == "state" and f.value == "dead")
    assert m.forget(death).value == "dead"
    assert m.character("Kofi Mensah")["alive"] is True  # worked out again from the facts that remain
    assert m.character("Ada Obi")["location"] == "harbour" and len(m.vectors) == len(m.facts)
    market = next(i for i, f in enumerate(m.facts) if f.kind == "location" and f.value == "market")
    m.revise(market, "Ada walked to the fish market at dawn.")
    assert m.relevant("fish market dawn", k=1, budget_tokens=100)[0].text == "Ada walked to the fish market at dawn."
    with pytest.raises(IndexError):
        m.forget(len(m.facts))


def test_a_scenes_part_round_trips_and_a_scene_can_be_forgotten_whole():
    m = StoryMemory(CAST, bow_embed)
    m.add(extract_facts(SCENE, 0, CAST))
    m.add(extract_facts("Ada ran to the harbour. Kofi died at the bridge.", 1, CAST))
    back = StoryMemory(CAST, bow_embed)
    for scene in (0, 1):
        back.add_part(json.loads(json.dumps(m.part(scene))))
    assert back.facts == m.facts and np.allclose(back.vectors, m.vectors, atol=1e-6)
    assert back.character("Kofi Mensah")["alive"] is False and back.scene == 1
    assert m.part(7) == {"facts": [], "vectors": []}
    m.forget_scene(1)
    assert {f.scene for f in m.facts} == {0} and len(m.vectors) == len(m.facts)
    assert m.character("Kofi Mensah")["alive"] is True and m.character("Ada Obi")["location"] != "harbour"


def test_a_verb_after_a_thing_is_not_taken_for_another_thing():
    facts = extract_facts("Everyone watched as the boats went out. Later the boats went home.", 0, CAST)
    assert {f.subject for f in facts if f.kind == "object"} == {"boats"}
