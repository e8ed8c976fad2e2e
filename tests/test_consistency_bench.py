"""The consistency benchmark's own measures (the stories themselves need the real model)."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import consistency  # noqa: E402
from emotional_engine.engine import Engine  # noqa: E402
from fakes import FakeEmotion, harbour, harbour_generator  # noqa: E402


def test_work_list_starts_with_a_long_story_and_matches_the_issue():
    items = consistency.length_items([500, 1000, 2500, 5000, 10000])
    assert items[0]["id"] == "length-10000-0"
    counts = {w: sum(it["words"] == w for it in items) for w in (500, 1000, 2500, 5000, 10000)}
    assert counts == {500: 5, 1000: 5, 2500: 5, 5000: 3, 10000: 2}
    assert len({it["culture"] for it in items}) == len(items)  # a different culture for each story
    assert len(consistency.localisation_items(300)) == 5 * 6 * 2


def test_a_story_keeps_its_id_culture_and_seed_whichever_lengths_are_asked_for():
    everything = {it["id"]: it for it in consistency.length_items([500, 1000, 2500, 5000, 10000])}
    for lengths in ([10000], [500, 2500], [5000]):
        for it in consistency.length_items(lengths):
            assert it == everything[it["id"]]  # a checkpoint saved under one run's id is that story


def test_masking_removes_names_and_profile_items():
    items = consistency.profile_items()
    assert "onigiri" in items and "miso soup" in items
    text = "They walked to the station. Later Hiroshi ate onigiri and miso soup with Tom by the river."
    out = consistency.masked(text, items)
    assert "hiroshi" not in out and "tom" not in out and "onigiri" not in out and "miso soup" not in out
    assert "river" in out and "station" in out
    # items are whole words: "boss" and "mate" are items, and the sensitivity checks' regexes are not
    out = consistency.masked("The bossy brothers hid their faces in the moonlight with a teammate.", items)
    assert all(w in re.findall(r"\w+", out) for w in ("bossy", "brothers", "faces", "moonlight", "teammate")), out


def test_localisation_similarity_is_lower_when_the_story_changes_not_only_names():
    same = {
        (0, "a"): "At dawn Ana walked to the river and sold fish.",
        (0, "b"): "At dawn Yuki walked to the river and sold fish.",
    }
    different = {
        (0, "a"): "Ana walked to the river and sold fish at dawn.",
        (0, "b"): "Yuki argued with her uncle about the rice harvest and the debt.",
    }
    s_same, _ = consistency.localisation_similarity(same)
    s_diff, per = consistency.localisation_similarity(different)
    assert s_same == pytest.approx(1.0) and s_diff < 0.3 and len(per) == 1


def test_interval():
    m, half, n = consistency.interval([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(2.484, abs=1e-3) and n == 3
    assert consistency.interval([0.5])[1] != consistency.interval([0.5])[1]  # nan for one story


def crashing(crash_at: int):
    """Dies in its `crash_at`-th scene candidate (and any later one), as a killed run would."""

    def write(call):
        if call.index + 1 >= crash_at:
            raise RuntimeError("killed")
        return harbour(call)

    return harbour_generator(write=write)


async def test_a_story_goes_on_after_the_last_scene_saved_before_a_crash(tmp_path):
    item = {
        "id": "length-1000-0",
        "words": 600,
        "culture": "ja-JP",
        "premise": consistency.PREMISES[0],
        "arc": "man_in_a_hole",
        "seed": 4,
    }

    def engine(gen):
        return Engine(generator=gen, emotion=FakeEmotion(), candidates=2, check_safety=False)

    whole = await consistency.engine_story(engine(harbour_generator()), item, tmp_path / "whole.json")
    partial = tmp_path / "partial" / "length-1000-0.json"
    with pytest.raises(RuntimeError, match="killed"):
        await consistency.engine_story(engine(crashing(crash_at=5)), item, partial)  # in scene 3
    assert len(json.loads(partial.read_text())["outcomes"]) == 2
    gen = harbour_generator()
    resumed = await consistency.engine_story(engine(gen), item, partial)
    scenes = len(whole["story"]["scenes"])
    assert len(gen.streams) == 2 * (scenes - 2)  # 2 candidates for each scene not saved
    assert resumed["story"]["text"] == whole["story"]["text"] and resumed["seconds"] > 0


def test_a_version_in_another_language_is_left_out_of_the_english_views():
    english = "At dawn Ana walked to the river and sold the fish that her father had caught in the night."
    spanish = "Al amanecer Ana caminó hasta el río y vendió los peces que su padre había pescado de noche."
    assert consistency.english(english) and not consistency.english(spanish)
    assert not consistency.english("AUGUSTONACASTAMURIAL-SHOOTHANE DAINERANTEMISALES7 Магазин")
    texts = {(0, "a"): english, (0, "b"): english.replace("river", "market"), (0, "c"): spanish}
    views = consistency.localisation_views(texts)
    # the Spanish version overlaps nothing, which pulls the all-versions mean down; the English view drops it
    assert views["English versions"][0] > views["all versions"][0]
    assert views["English versions"][0] == pytest.approx(
        consistency.localisation_similarity({k: v for k, v in texts.items() if k[1] != "c"})[0]
    )


def test_short_scenes_are_counted_from_the_technical_agents_length_reasons():
    story = {
        "scenes": [{"text": ""}, {"text": "a b c"}, {"text": "word " * 140}],
        "quality": {
            "reasons": [
                "scene 1: 0 words, asked for 150 (more than 10% off)",
                "scene 2: 70 words, asked for 150 (more than 10% off)",
                "scene 2: reading grade 16.1 is above 16 for a adult audience",
                "scene 3: 80 words, asked for 150 (more than 10% off)",
            ]
        },
    }
    assert consistency.short_scenes(story) == (2, 1, 3)  # 0 and 70 are under half of 150; 80 is not


async def test_remeasure_measures_the_saved_stories_again_without_writing(tmp_path):
    from types import SimpleNamespace

    item = consistency.fit_items()[0]
    gen = harbour_generator()
    engine = Engine(generator=gen, emotion=FakeEmotion(), candidates=2, check_safety=False)
    result = await consistency.engine_story(engine, item, tmp_path / "partial" / f"{item['id']}.json")
    result["measures"] = {"character_consistency": -1.0, "cast_mentions": 0}  # stale, from older code
    consistency.save(tmp_path, item, result)
    streams = len(gen.streams)
    args = SimpleNamespace(
        out=str(tmp_path),
        parts="fit",
        lengths="500",
        limit=None,
        loc_words=300,
        loc_cultures=6,
        remeasure=True,
        candidates=2,
        concurrency=1,
    )
    await consistency.run(args, engine)
    saved = json.loads((tmp_path / f"{item['id']}.json").read_text())
    assert len(gen.streams) == streams  # nothing was written
    assert saved["story"] == json.loads(json.dumps(result["story"]))
    assert saved["measures"] == json.loads(json.dumps(consistency.measure(engine, item, result["story"])))
