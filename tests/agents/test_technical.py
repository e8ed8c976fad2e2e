"""Technical-quality checks, each proven on a planted problem and on clean text."""

import pytest

from emotional_engine.agents.technical import check_text, repeated_ngram_share
from emotional_engine.text import split_sentences, trim_to_last_sentence

CLEAN = (
    "Amara carried the lantern down to the harbour before dawn. The boats were still tied, and the water "
    "slapped quietly against their hulls. She counted them twice, because her grandfather had taught her to. "
    "When the first gull cried, she laughed and set the lantern on the wall."
)


def test_clean_text_has_no_issues():
    r = check_text(CLEAN, "teen", target_words=len(CLEAN.split()))
    assert r.issues == [] and r.score == 1.0 and not r.cut_off and r.length_ok


def test_planted_loop_is_caught():
    looped = CLEAN + " The boats were still tied, and the water slapped quietly against their hulls." * 3
    r = check_text(looped, "adult")
    assert r.repeated_sentences and any("loops" in i for i in r.issues)
    assert r.repeated_4grams > 0.12 and r.score < 0.8


def test_cut_off_sentence_is_caught_and_trimmed():
    cut = CLEAN + " Then she turned toward the"
    r = check_text(cut, "adult")
    assert r.cut_off and "cut off" in " ".join(r.issues)
    assert trim_to_last_sentence(cut) == CLEAN
    assert trim_to_last_sentence('He said, "Go." And then') == 'He said, "Go."'
    assert trim_to_last_sentence("no sentence ends here") == "no sentence ends here"


def test_readability_depends_on_the_audience():
    dense = (
        "The municipality's infrastructural rehabilitation necessitated comprehensive intergovernmental "
        "consultation regarding environmental sustainability considerations and socioeconomic ramifications."
    )
    assert any("reading grade" in i for i in check_text(dense, "children").issues)
    assert not any("reading grade" in i for i in check_text(CLEAN, "children").issues)


@pytest.mark.parametrize("n, ok", [(45, True), (55, True), (44, False), (56, False)])
def test_length_within_ten_percent(n, ok):
    text = " ".join(["word"] * (n - 1)) + " end."
    assert check_text(text, "adult", target_words=50).length_ok is ok


def test_sentence_split_and_ngram_share():
    assert split_sentences('One. "Two!" Three? Four') == ["One.", '"Two!"', "Three?", "Four"]
    assert repeated_ngram_share("a b c d a b c d".split()) == pytest.approx(2 / 5)
    assert repeated_ngram_share([]) == 0.0


def test_meta_lines_are_stripped():
    from emotional_engine.text import strip_meta_lines

    text = (
        "Scene 2: The storm\n## Part one\nIntroduce the protagonist in a dramatic way:\n"
        "Rain fell on the roofs.\nShe said: go."
    )
    assert strip_meta_lines(text) == "Rain fell on the roofs.\nShe said: go."
    slot = "[Title Sentence] What makes a story powerful.\n[Name]\n\nShe kept [the] key."
    assert strip_meta_lines(slot) == "What makes a story powerful.\n\nShe kept [the] key."


def test_sentences_about_the_writing_are_told_from_story_sentences():
    from emotional_engine.agents.technical import about_the_writing

    # each from a benchmark story written by the embedded model
    for s in (
        "Here is a rewritten version of the scene with a focus on clean language.",
        "In scene 2, the order and structure of the two opposing scenes change.",
        "Descriptive: I am making this scene within the confines of 150 words.",
        "This sentence has a very different tone from the rest of the story.",
        "Here's a continuation of the story, focusing on a moment of healing.",
        "Here is the given version of scene 1 as a continuation of your plot outline.",
        "If your character arrives in a haunted location, you may choose to show the others watching.",
        "By adding a strong moral sense to the conclusion, it allows the reader to understand the depth.",
        "You can skip that extra part and simply transition to the next scene again.",
        "Your creativity must be what makes your writing impactful.",
    ):
        assert about_the_writing(s), s
    for s in (
        '"Here is the key," she said.',
        "Here is the harbour where her father worked.",
        "Police taped off the crime scene before dawn.",
        "She watched this scene of chaos unfold.",
        "The story goes back decades.",
        "He wrote three words on the card.",
        "Here's a meeting of the souls of those cursed enemies at sea.",
        '"Your story is a good one," the old man said.',
        "She was a reader of old maps.",
        "He kept your letters in a tin by the bed.",
        "The next morning the scene was quiet.",
    ):
        assert not about_the_writing(s), s


def test_talk_about_the_scene_is_caught_and_a_scene_in_the_story_is_not():
    from emotional_engine.agents.technical import about_the_writing

    assert about_the_writing("In this scene, the focus shifts to the subjects of love and trust.")
    assert about_the_writing("The story is about a kite maker's reaction to a powerful threat.")
    assert about_the_writing("A surprising twist emerging into the narrative.")
    assert about_the_writing("This ending uses the setting of depressing issues being solved.")
    assert about_the_writing("This concludes the scene.")
    assert not about_the_writing("In the scene of the crime, the detective knelt.")
    assert not about_the_writing("She told him the story about the storm.")
    assert not about_the_writing('"In this scene," the director shouted, "you fall."')  # dialogue is story
