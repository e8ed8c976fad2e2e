"""The cultural agent's name check, proven on planted foreign names and on clean text."""

from emotional_engine.agents.cultural import foreign_names, name_index


def test_name_index_knows_names_by_culture():
    idx = name_index()
    assert any("ja-JP" in tags for tags in idx.values())
    assert any("sw-KE" in tags for tags in idx.values())


def test_clean_text_and_sentence_starts_are_left_alone():
    assert foreign_names("Will you come? Rose petals fell. Haruto laughed and kept walking.", "ja-JP") == {}
    assert foreign_names("They met Haruto.", "ja-JP") == {}
    # "He" is a Chinese surname, but an English pronoun first (seen in a real story: "... and He smiled")
    assert "He" in name_index() and foreign_names("Night fell, and He smiled.", "yo-NG") == {}
