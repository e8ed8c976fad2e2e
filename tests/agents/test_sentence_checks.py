"""The gate's repairs, sentence by sentence as text streams: planted errors are substituted,
rewritten through a scripted generator, or dropped before they are shown."""

from emotional_engine.agents.character import check_mentions, checker_for
from emotional_engine.agents.character_check import StoryFacts
from emotional_engine.agents.gate import SentenceGate
from emotional_engine.agents.sentence_checks import CharacterCheck, SensitivityCheck, rewriter
from emotional_engine.culture import load_profile
from emotional_engine.domain import Character
from emotional_engine.text import split_sentences
from fakes import CAST, YO, FakeGenerator


async def shown(text: str, gate: SentenceGate) -> str:
    """Stream `text` through the gate sentence by sentence, as the orchestrator does."""
    out = ""
    for sentence in split_sentences(text):
        s = await gate.check(sentence)
        if s is not None:
            piece = (" " if out else "") + s
            out += piece
            gate.shown_as(piece)
    return out


def character_gate(gen, checker=None, culture="yo-NG", cast=CAST):
    checker = checker or checker_for(cast, load_profile(culture))
    return SentenceGate(culture, [c.name for c in cast], seed=1, checks=[CharacterCheck(checker, rewriter(gen, 1))])


async def test_a_stray_name_is_replaced_by_its_stand_in_everywhere():
    gate = character_gate(FakeGenerator())
    out = await shown("Amara met Hans at the gate. Hans smiled at her and Hans carried the basket.", gate)
    assert "Hans" not in out
    stand_in = next(w for w in ("Chidi", "Bisi") if w in out)
    assert out.count(stand_in) == 3 and any("Hans" in r for r in gate.scene.reasons)


async def test_a_wrong_pronoun_is_fixed():
    gate = character_gate(FakeGenerator())
    out = await shown(
        "Amara walked to the well before sunrise. He filled two buckets and carried them on his head.", gate
    )
    assert out == "Amara walked to the well before sunrise. She filled two buckets and carried them on her head."


async def test_the_gate_reads_pronouns_across_scenes_as_the_finished_story_is_read():
    gate = character_gate(FakeGenerator())
    first = await shown("Chidi walked to the river. He sat down on the bank.", gate)
    gate.start_scene(1)
    second = await shown("He looked at the water for a long time. She smiled at the fish.", gate)
    assert second == "He looked at the water for a long time. He smiled at the fish."
    assert check_mentions(first + "\n\n" + second, CAST).findings == []


async def test_the_dead_acting_is_rewritten_with_the_reason_given_to_the_model():
    checker = checker_for(CAST, YO)
    checker.learn(checker.check("Chidi drowned in the river that spring. Amara wept for a week."))
    assert checker.facts.dead == ["Chidi Okafor"]  # learned in an earlier scene
    gen = FakeGenerator("Amara carried the basket home alone.")
    out = await shown("The market was loud. Chidi carried the basket home for Amara.", character_gate(gen, checker))
    assert out == "The market was loud. Amara carried the basket home alone."
    assert "Chidi Okafor died earlier" in gen.completions[0].prompt[1]["content"]
    assert "<before>\nThe market was loud.\n</before>" in gen.completions[0].prompt[1]["content"]  # what came before
    # remembering the dead is no error
    remember = "Amara remembered how Chidi used to sing."
    assert (
        await shown(remember, character_gate(FakeGenerator(), checker_for(CAST, YO, StoryFacts(dead=["Chidi Okafor"]))))
        == remember
    )


async def test_a_contradiction_the_model_cannot_fix_is_dropped():
    gen = FakeGenerator("She saw the river glitter.", "Amara watched the boats.")  # both still contradict "blind"
    gate = character_gate(gen)
    out = await shown("Amara sat by the water. She saw the river glitter in the sun. Then she went home.", gate)
    assert out == "Amara sat by the water. Then she went home." and len(gen.completions) == 2
    assert gate.scene.dropped == 1


def sensitivity_gate(gen, culture, cast):
    return SentenceGate(culture, cast, seed=1, checks=[SensitivityCheck(culture, "adult", rewriter(gen, 1))])


async def test_a_stereotype_is_rewritten_and_cultural_fit_falls():
    gen = FakeGenerator("The waiter set down the drinks and wished them a good evening.")
    gate = sensitivity_gate(gen, "sw-KE", ["Wanjiku Kamau"])
    out = await shown(
        "Wanjiku sat in the café. Hakuna matata, the waiter grinned as he set down the drinks. She paid and left.", gate
    )
    assert "Hakuna matata" not in out and "wished them a good evening" in out
    assert gate.scene.cultural_fit == round(1 - 1 / 3, 4) and any("rewrote" in r for r in gate.scene.reasons)
    assert "hakuna matata" in gen.completions[0].prompt[1]["content"].lower()  # the model is told what is wrong

    clean = "Wanjiku sat in the café. The waiter set down two cups of chai. She paid with M-Pesa and left."
    gate = sensitivity_gate(FakeGenerator(), "sw-KE", ["Wanjiku Kamau"])
    assert await shown(clean, gate) == clean and gate.scene.cultural_fit == 1.0


async def test_a_cliche_the_model_cannot_fix_is_dropped():
    gen = FakeGenerator("The exotic beauty smiled again.")  # still a cliché, twice
    gate = sensitivity_gate(gen, "ja-JP", ["Aoi Tanaka"])
    out = await shown("Aoi opened the shop. The exotic beauty smiled at the customers. It was a slow morning.", gate)
    assert out == "Aoi opened the shop. It was a slow morning." and len(gen.completions) == 2


def test_a_rewrite_that_talks_about_the_task_or_runs_on_is_no_rewrite():
    from emotional_engine.agents.rewrite import plausible

    original = "The exotic beauty smiled at the customers."
    assert plausible(original, "The young woman smiled at the customers.")
    assert not plausible(original, "The sentence is too simplistic and does not convey the emotions.")
    assert not plausible(original, "I'd love to help with a story you're working on.")
    assert not plausible(original, "A: A: A town surrounded by dark water B: A town.")
    assert not plausible(original, "The young woman smiled at the customers and")  # unfinished
    # the problem statement written into the story instead of a rewrite (seen in real stories)
    reason = "mild hate content is not suitable for a adult audience"
    assert not plausible(original, "Mild hate content is not suitable for an adult audience.", reason)
    assert not plausible(original, "<<ref<refer> Theft and crafty ways are right.", reason)
    assert plausible(original, "The young woman smiled at the customers.", reason)
    assert not plausible(original, " ".join(["word"] * 40) + ".")  # runs on


async def test_an_implausible_rewrite_counts_as_a_failed_try_and_the_sentence_goes():
    gen = FakeGenerator("I'd love to help with a story you're working on.")
    gate = sensitivity_gate(gen, "ja-JP", ["Aoi Tanaka"])
    out = await shown("Aoi opened the shop. The exotic beauty smiled at the customers. It was a slow morning.", gate)
    assert out == "Aoi opened the shop. It was a slow morning." and len(gen.completions) == 2


async def test_headings_between_paragraphs_are_not_shown():
    gate = SentenceGate("en-GB", ["Ann Lee"], seed=0)
    assert await gate.check("Jack Perry Deconstruction") is None
    assert await gate.check('"Wait," she said.') == '"Wait," she said.'


async def test_a_stand_in_whose_name_looks_like_a_regex_group_is_put_in_as_written():
    cast = [CAST[0], Character(name="Chidi\\1 Okafor", role="brother", pronouns="he/him")]
    out = await shown("Amara met Hans at the gate. Hans smiled at her.", character_gate(FakeGenerator(), cast=cast))
    assert out.startswith("Amara met Chidi\\1 at the gate.") and "Hans" not in out  # no re.error
