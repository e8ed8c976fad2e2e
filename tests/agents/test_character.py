"""The character agent: cast building, and planted errors caught and repaired with a fake generator."""

from emotional_engine.agents.character import build_cast, check_mentions, checker_for, scene_states
from emotional_engine.agents.character_check import StoryFacts
from emotional_engine.culture import load_profile
from emotional_engine.domain import CastMember, StoryRequest
from fakes import CAST, YO, FakeEmotion


def test_cast_is_completed_from_the_culture_and_deterministic():
    req = StoryRequest(
        premise="A kite festival",
        culture="ja-JP",
        seed=3,
        cast=[CastMember(name="Aoi Tanaka", role="protagonist", pronouns="she/her")],
    )
    cast = build_cast(req, load_profile("ja-JP"))
    assert [c.role for c in cast] == ["protagonist", "ally", "rival"]
    assert cast[0].name == "Aoi Tanaka"
    assert all(c.pronouns in ("she/her", "he/him") for c in cast[1:])
    assert [c.name for c in build_cast(req, load_profile("ja-JP"))] == [c.name for c in cast]
    # a relationship graph and goals
    assert cast[0].relationships == {cast[1].name: "friend", cast[2].name: "rival"}
    assert cast[1].relationships == {"Aoi Tanaka": "friend"} and cast[2].relationships == {"Aoi Tanaka": "rival"}
    assert cast[0].goals == ["A kite festival"] and all(c.goals for c in cast)


def test_a_person_the_premise_names_becomes_the_protagonist():
    req = StoryRequest(
        premise="Emeka, a fisherman's son, finds a letter from his lost brother.", culture="yo-NG", seed=1
    )
    cast = build_cast(req, YO)
    assert cast[0].name == "Emeka" and cast[0].pronouns == "he/him" and cast[0].role == "protagonist"
    req = StoryRequest(premise="A fisherman's daughter saves the harbour.", culture="yo-NG", seed=1)
    assert build_cast(req, YO)[0].pronouns == "she/her"  # the premise's words choose the protagonist's pronouns
    req = StoryRequest(premise="Funmilayo, a fisherman's daughter, keeps her late brother's boat.", culture="yo-NG")
    assert (build_cast(req, YO)[0].name, build_cast(req, YO)[0].pronouns) == ("Funmilayo", "she/her")  # apposition
    req = StoryRequest(premise="A blind potter and her grandfather prepare for the festival.", culture="ja-JP", seed=2)
    hero = build_cast(req, load_profile("ja-JP"))[0]
    assert hero.pronouns == "she/her" and "blind" in hero.traits  # the first gendered word; a known trait
    req = StoryRequest(premise="A night market in Victoria.", culture="en-AU", seed=2)
    assert build_cast(req, load_profile("en-AU"))[0].name != "Victoria"  # a place, not a person


def test_clean_text_with_aliases_address_and_two_genders_is_consistent():
    text = (
        "Amara and Chidi argued about the roof. She wanted it fixed; he wanted to wait. "
        "Mama Ify laughed at them both. Okafor-ji, a neighbour called to Chidi, is your sister right?"
    )
    r = check_mentions(text, CAST, YO)
    assert r.findings == [] and r.character_consistency == 1.0
    # a capitalised word that starts a line or a quotation is no name ("My", "May")
    assert (
        check_mentions(
            'Amara wrote:\nMy dear brother, come home. "May the river keep you," she said.', CAST, YO
        ).findings
        == []
    )
    assert r.mentions["Amara Okafor"] >= 3 and r.mentions["Chidi Okafor"] >= 3


def test_kinship_contradicts_the_sheet_and_earlier_scenes():
    assert check_mentions("Amara's sister Chidi came home.", CAST, YO).findings[0].kind == "contradiction"
    facts = StoryFacts(kin={"Bisi Adeyemi": {"Chidi Okafor": "cousin"}})
    r = check_mentions("Bisi hugged her husband Chidi at the door.", CAST, YO, facts)
    assert [f.kind for f in r.findings] == ["contradiction"] and "cousin" in r.findings[0].reason
    assert check_mentions("Amara hugged her brother Chidi at the door.", CAST, YO).findings == []


def test_states_per_character_come_from_their_own_sentences():
    score = FakeEmotion({"laughed": ("joy", 0.8)}, otherwise=("sadness", -0.8)).score_passages
    result = checker_for(CAST, YO).check("Amara laughed at the joke. Chidi wept by the river. He could not stop.")
    assert scene_states(result, score) == {"Amara Okafor": "joy", "Chidi Okafor": "sadness"}


def test_a_country_that_is_also_a_given_name_is_not_a_stray_name():
    text = "Deaths became commonplace throughout France. Amara read of Nigeria and Japan in the paper."
    assert check_mentions(text, CAST).findings == []
    assert [f.span for f in check_mentions("Amara met Hans at the gate.", CAST).findings] == ["Hans"]


def test_a_city_that_is_also_a_given_name_is_a_place_after_a_place_preposition():
    # a benchmark story had 'Rome' turned into the cast's Lorenzo; London, Sydney and Austin are names too
    text = "Amara moved to London in May. Chidi grew up in Sydney and came back from Austin. The village of Rome slept."
    assert check_mentions(text, CAST, YO).findings == []
    # the same names as people: given to, heard from, in their arms, a parent
    for text, stray in (
        ("Amara gave the letter to Sydney.", "Sydney"),
        ("A call from Austin woke Chidi.", "Austin"),
        ("Chidi fell asleep in London's arms.", "London"),
        ("The son of Austin wept.", "Austin"),
        ("Amara went to Rome, and Rome said no.", "Rome"),
    ):
        assert stray in [f.span for f in check_mentions(text, CAST, YO).findings], text


def test_a_blank_name_or_alias_is_refused_and_the_checker_survives_one():
    import subprocess
    import sys

    import pytest
    from pydantic import ValidationError

    for bad in ({"name": "  "}, {"name": "Ann", "aliases": [""]}, {"name": "Ann", "aliases": ["  "]}):
        with pytest.raises(ValidationError):
            CastMember(**bad)
    assert CastMember(name=" Ann Lee ", aliases=[" Annie "]).aliases == ["Annie"]
    # a Character built otherwise (a saved session) may still carry one: a blank alias matched before every
    # word and mentions() never moved on, growing without bound (the schema test's job ate 20 GB); in a
    # subprocess, so a regression fails on the timeout instead of taking the test run down
    code = (
        "from emotional_engine.agents.character import check_mentions; from emotional_engine.domain import Character; "
        "c = [Character(name='Ann Lee', role='lead', pronouns='she/her', aliases=['', ' ', 'Auntie Ann'])]; "
        "r = check_mentions('Ann smiled. Auntie Ann laughed, and she left.', c); print(r.mentions['Ann Lee'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.split()[-1] == "3", out.stderr


def test_a_faith_a_title_and_a_run_on_sentence_start_are_not_stray_names():
    # from the fit benchmark: "Jesus Christ" and "the Buddha" became cast members, and so did "My"
    # after an ellipsis the sentence splitter had not split ("skybound....My mind wanders")
    for text in (
        "Amara prayed to Jesus Christ in the dark.",
        "Chidi came to the Buddha with his question.",
        "The stars were skybound....My mind wanders, Amara thought.",
        "The walls of Rome began.",
    ):
        assert check_mentions(text, CAST, YO).findings == [], text
    assert [f.span for f in check_mentions("Amara met Hans at the gate.", CAST).findings] == ["Hans"]
