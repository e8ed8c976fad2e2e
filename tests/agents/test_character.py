"""Cast building and mention tracking, on planted unknown names and on clean text."""

from emotional_engine.agents.character import build_cast, check_mentions
from emotional_engine.agents.cultural import name_index
from emotional_engine.culture import load_profile
from emotional_engine.domain import CastMember, StoryRequest


def test_cast_is_completed_from_the_culture_and_deterministic():
    req = StoryRequest(premise="A kite festival", culture="ja-JP", seed=3,
                       cast=[CastMember(name="Aoi Tanaka", role="protagonist", pronouns="she/her")])
    cast = build_cast(req, load_profile("ja-JP"))
    assert [c.role for c in cast] == ["protagonist", "ally", "rival"]
    assert cast[0].name == "Aoi Tanaka"
    assert all(c.pronouns in ("she/her", "he/him") for c in cast[1:])
    assert [c.name for c in build_cast(req, load_profile("ja-JP"))] == [c.name for c in cast]


def test_mentions_and_a_planted_stranger():
    req = StoryRequest(premise="A kite festival", culture="en-US", seed=1)
    cast = build_cast(req, load_profile("en-US"))
    hero = cast[0].name.split()[0]
    stranger = next(n for n, tags in sorted(name_index().items())
                    if "en-US" in tags and n not in {w for c in cast for w in c.name.split()} and n.isalpha())
    clean = f"At dawn {hero} climbed the hill. Later {hero}'s kite rose."
    r = check_mentions(clean, cast)
    assert r.mentions[cast[0].name] == 2 and r.unknown_names == [] and r.character_consistency == 1.0
    r = check_mentions(clean + f" Then {stranger} arrived.", cast)
    assert r.unknown_names == [stranger] and r.character_consistency == round(2 / 3, 4)
