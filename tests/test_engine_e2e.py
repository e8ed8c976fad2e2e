"""One real story end to end with the embedded model and the emotion model (marked `model`)."""

import json

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app
from emotional_engine.domain import EMOTIONS, StoryRequest
from emotional_engine.engine import Engine

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine(embedded_path):
    from emotional_engine.config import Settings

    return Engine(Settings(model_path=embedded_path, max_batch=4), candidates=2)


def test_a_real_story_follows_the_contract_and_the_seed(engine):
    req = StoryRequest(
        premise="A girl in Nairobi teaches her grandmother to ride a bicycle.",
        culture="sw-KE",
        words=150,
        seed=4,
        arc="rags_to_riches",
    )
    story = engine.generate(req)
    assert story.text.strip() and len(story.scenes) == 1
    sc = story.scenes[0]
    assert sc.measured is not None and sc.measured.emotion in EMOTIONS and -1 <= sc.measured.valence <= 1
    assert abs(sum(sc.measured.scores.values()) - 1) < 1e-3
    assert len(story.characters) == 3 and story.culture == "sw-KE"
    assert story.provenance["model_sha256"] and story.provenance["seed"] == 4
    assert 0 <= story.quality.overall <= 1 and story.timings_ms["language_model"] > 0
    assert story.provenance["logit_steering"] is True
    # the model wrote the plan line, and it stands only where it keeps to the premise
    assert story.provenance["plan_written_by"] in ("model", "rules")
    assert (sc.outline is not None) == (story.provenance["plan_written_by"] == "model")
    protagonist = story.characters[0].name.split()[0]
    assert story.text.startswith(f"{protagonist}, a girl")  # the continuation style opens with the premise's lead
    q = story.quality  # the model's own log-probabilities give the fluency; nothing in it talks about the writing
    assert q.fluency is not None and 0 < q.fluency < 1 and q.meta_rate == 0.0 and q.resampled_sentences >= 0
    assert q.premise_adherence is not None and 0 <= q.premise_adherence <= 1
    assert story.safety["status"] in ("passed", "flagged", "repaired") and story.safety["sentences"] >= 2
    again = engine.generate(req)
    assert again.text == story.text  # same request, same seed, same model: the same story

    # the premise shows in most draws (one seeded draw says little: a 135M model drifts off in some, and
    # benchmarks/story_quality.py measures the rate over twelve requests)
    others = [engine.generate(req.model_copy(update={"seed": seed})).text.lower() for seed in (5, 6)]
    on_premise = [any(w in text for w in ("bicycle", "bike", "grandmother")) for text in [story.text.lower(), *others]]
    assert sum(on_premise) >= 2, on_premise


async def test_streaming_gives_the_same_story_sentence_by_sentence(engine):
    req = StoryRequest(
        premise="A boy in Osaka finds a lost cat before the festival.",
        culture="ja-JP",
        words=120,
        seed=9,
        arc="cinderella",
    )
    events = [e async for e in engine.stream(req)]
    kinds = [e.kind for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "story_done"
    texts = [e.data["text"] for e in events if e.kind == "text"]
    story = events[-1].data
    assert len(texts) >= 2 and "".join(texts) == story.text
    assert kinds.index("text") < kinds.index("scene_done")  # text arrives before the scene is finished
    assert (await engine.agenerate(req)).text == story.text


def test_generate_cli_prints_the_json_contract(embedded_path, monkeypatch):
    monkeypatch.setenv("EE_MODEL_PATH", str(embedded_path))
    from emotional_engine.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--premise",
            "A kite festival in Lagos.",
            "--culture",
            "yo-NG",
            "--words",
            "100",
            "--seed",
            "2",
            "--candidates",
            "1",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    story = json.loads(result.stdout)
    for key in (
        "schema_version",
        "title",
        "text",
        "culture",
        "language",
        "arc",
        "scenes",
        "characters",
        "quality",
        "safety",
        "degraded",
        "timings_ms",
        "provenance",
    ):
        assert key in story
    assert story["arc"]["name"] == "man_in_a_hole" and len(story["arc"]["target"]) == len(story["scenes"])
    assert set(story["quality"]) >= {
        "emotion_fit",
        "character_consistency",
        "cultural_fit",
        "coherence",
        "diversity",
        "overall",
        "reasons",
    }


def test_generate_cli_explains_bad_input():
    result = CliRunner().invoke(app, ["generate", "--premise", "x", "--culture", "xx-YY"])
    assert result.exit_code == 2 and "culture" in result.stderr
    result = CliRunner().invoke(app, ["generate", "--premise", "x", "--arc-points", "0,0;0,1"])
    assert result.exit_code == 2 and "strictly increasing" in result.stderr
