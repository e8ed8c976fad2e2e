"""The cultural agent's name check, proven on planted foreign names and on clean text."""

from emotional_engine.agents.cultural import foreign_names
from emotional_engine.culture.lexicon import name_index, name_like_words


def test_name_index_knows_names_by_culture():
    idx = name_index()
    assert any("ja-JP" in tags for tags in idx.values())
    assert any("sw-KE" in tags for tags in idx.values())


def test_clean_text_and_sentence_starts_are_left_alone():
    assert foreign_names("Will you come? Rose petals fell. Haruto laughed and kept walking.", "ja-JP") == {}
    assert foreign_names("They met Haruto.", "ja-JP") == {}
    # "He" is a Chinese surname, but an English pronoun first (seen in a real story: "... and He smiled")
    assert "He" in name_index() and foreign_names("Night fell, and He smiled.", "yo-NG") == {}
    # dialogue opens a sentence after a comma, and "Oh" is a Korean surname: a benchmark story had
    # 'Aster turned, "Oh, ...' turn into an Amharic name; a foreign name is still seen where it stands as one
    text = 'Aster turned, "Oh, the river," and laughed. "Emily?" she asked, and Emily came.'
    assert set(foreign_names(text, "am-ET")) == {"Emily"}
    assert foreign_names('Aster turned, "Oh, the river!" (Well, almost.)', "am-ET") == {}


def test_titles_places_and_ordinary_words_are_no_foreign_names():
    # each was replaced by a person's name in a benchmark story before this rule
    for text in (
        "They crowned the King at dawn.",
        "On New Year's Day she sang.",
        "The White House was quiet.",
        "He flew to Paris with Kumiko.",
        "Deaths became common throughout France.",
    ):
        assert foreign_names(text, "ja-JP") == {}, text
    # the same words standing alone, as names do, still count; so do names that are no ordinary words
    assert set(foreign_names("Then Luke smiled at Kumiko, and King waved.", "ja-JP")) == {"Luke", "King"}
    assert set(foreign_names("Kumiko met Emily and Rose by the river.", "ja-JP")) == {"Emily", "Rose"}
    # a use that opens a sentence does not make a title a name ("Good" is an American surname; a
    # 2,500-word benchmark story's final text was counted as keeping it)
    assert foreign_names("The Law of Good Life held. You removed a sentence. Good. Use a comma.", "vi-VN") == {}
    assert "Love" not in name_like_words('She sang, "fun builds heart…” Love and comfort found each other.')


def test_a_city_that_is_also_a_name_is_no_foreign_name_where_it_stands_as_a_place():
    for text in ("Kumiko moved to London in May.", "In Sydney the rain kept on.", "She flew back from Austin."):
        assert foreign_names(text, "ja-JP") == {}, text
    # as a person anywhere in the text, it counts
    assert set(foreign_names("Kumiko gave the letter to Sydney.", "ja-JP")) == {"Sydney"}
    assert set(foreign_names("Kumiko moved to Austin, where Austin waited.", "ja-JP")) == {"Austin"}


def test_a_faith_is_no_foreign_name():
    # a fit benchmark story had "Islam" and "Christian" replaced by Indonesian names, "Lord" by a Chinese one
    for text in (
        "The family had turned to Islam long ago.",
        "A small Christian school stood by the road.",
        "She prayed, and the Lord of the mountain listened.",
    ):
        assert foreign_names(text, "id-ID") == {}, text
    assert set(foreign_names("Kumiko met Emily by the river.", "ja-JP")) == {"Emily"}


def test_a_name_after_the_walls_or_gates_of_is_a_place():
    # the pt-BR fit story: "The walls of Rome began." made Rome a cast member
    assert foreign_names("Beatriz looked up. The walls of Rome began.", "pt-BR") == {}
