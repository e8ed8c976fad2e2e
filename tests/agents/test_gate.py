"""The per-sentence gate: foreign names replaced the same way all story long, meta lines and failed checks dropped."""

from emotional_engine.agents.gate import SentenceGate, sentence_names
from emotional_engine.culture.lexicon import name_index


def _foreign_for(culture: str) -> str:
    """A given name that only some other culture has, and that is no common word."""
    from emotional_engine.agents.gate import common_words

    return next(
        w
        for w, tags in sorted(name_index().items())
        if culture not in tags and "ja-JP" in tags and w.lower() not in common_words() and len(w) > 3
    )


def test_a_name_at_the_start_of_a_sentence_counts_unless_it_is_a_common_word():
    assert "Keiko" in sentence_names("Keiko opened the door.")
    assert "Will" not in sentence_names("Will you come back?")
    assert "Will" in sentence_names("She waved at Will.")


async def test_foreign_names_are_replaced_consistently_across_sentences():
    name = _foreign_for("sw-KE")
    gate = SentenceGate("sw-KE", ["Amani Otieno"], seed=3)
    first = await gate.check(f"{name} walked to the market with Amani.")
    second = await gate.check(f"Later Amani laughed at {name} again.")
    new = gate.replacements[name]
    assert name not in first and name not in second
    assert first.startswith(new) and second.endswith(f"{new} again.")
    assert "sw-KE" in name_index().get(new, ()) and new != "Amani"
    assert gate.scene.foreign_names == {name: sorted(name_index()[name])}
    assert gate.scene.cultural_fit == 0.0  # both sentences carried a foreign name


async def test_cast_names_pass_even_if_another_culture_has_them():
    gate = SentenceGate("en-GB", ["Keiko Sato"], seed=0)
    assert await gate.check("Keiko smiled at the sea.") == "Keiko smiled at the sea."
    assert gate.scene.cultural_fit == 1.0


async def test_meta_lines_and_failed_checks_are_dropped():
    seen_before = []

    async def no_storms(s, before):
        seen_before.append(before)
        return (None, "dropped a storm") if "storm" in s else (s, None)

    gate = SentenceGate("en-GB", ["Ann Lee"], seed=0, checks=[no_storms])
    assert await gate.check("Scene 2:") is None
    assert await gate.check("Here is a revised version of the scene that adds context.") is None
    assert await gate.check("A storm came.") is None
    gate.shown_as("It was dawn.")
    assert await gate.check("The sun rose.") == "The sun rose."
    assert seen_before == ["", "It was dawn."]  # the checks see what was shown before
    assert gate.scene.dropped == 1 and gate.scene.reasons == ["dropped a storm"] and gate.scene.sentences == 2
    assert gate.start_scene().dropped == 0
