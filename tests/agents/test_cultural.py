"""The cultural agent's name check, proven on planted foreign names and on clean text."""

from emotional_engine.agents.cultural import check_and_repair, foreign_names, name_index


def test_name_index_knows_names_by_culture():
    idx = name_index()
    assert any("ja-JP" in tags for tags in idx.values())
    assert any("sw-KE" in tags for tags in idx.values())


def _foreign_to(culture: str) -> str:
    """A given name produced by another culture's generator and never by `culture`'s."""
    return next(n for n, tags in sorted(name_index().items()) if culture not in tags and n.isalpha() and len(n) > 3)


def test_planted_foreign_name_is_replaced_consistently():
    alien = _foreign_to("ja-JP")
    text = f"Haruto walked home. On the bridge, {alien} waved at him, and {alien} smiled."
    fixed, report = check_and_repair(text, "ja-JP", cast_names=["Haruto"], seed=1)
    assert alien in report.foreign_names and alien not in fixed
    new = report.replacements[alien]
    assert fixed.count(new) == 2 and "ja-JP" in name_index().get(new, {"ja-JP"})
    assert report.cultural_fit < 1.0 and report.reasons


def test_clean_text_and_sentence_starts_are_left_alone():
    text = "Will you come? Rose petals fell. Haruto laughed and kept walking."
    fixed, report = check_and_repair(text, "ja-JP", cast_names=["Haruto"])
    assert fixed == text and report.foreign_names == {} and report.cultural_fit == 1.0
    assert foreign_names("They met Haruto.", "ja-JP") == {}
    # "He" is a Chinese surname, but an English pronoun first (seen in a real story: "... and He smiled")
    assert "He" in name_index() and foreign_names("Night fell, and He smiled.", "yo-NG") == {}
