"""Every culture profile file validates, and tags resolve the way the CLI and the engine expect."""

from importlib import resources

import pytest
import yaml
from pydantic import ValidationError

from emotional_engine.culture import CultureProfile, closest_tags, load_profile, profile_tags, supported_cultures

PROFILE_FILES = sorted(
    p for p in resources.files("emotional_engine.culture").joinpath("profiles").iterdir() if p.name.endswith(".yaml")
)
REQUIRED_TAGS = [
    "en-US",
    "en-GB",
    "en-IN",
    "es-MX",
    "pt-BR",
    "fr-FR",
    "de-DE",
    "ru-RU",
    "pl-PL",
    "tr-TR",
    "ar-EG",
    "fa-IR",
    "hi-IN",
    "bn-BD",
    "ja-JP",
    "ko-KR",
    "zh-CN",
    "vi-VN",
    "id-ID",
    "fil-PH",
    "sw-KE",
    "yo-NG",
    "am-ET",
    "zu-ZA",
    "en-AU",
    "mi-NZ",
]


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_every_profile_file_validates(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    profile = CultureProfile.model_validate(data)
    assert path.name == f"{profile.tag}.yaml"
    for field in ("places", "foods", "festivals", "objects"):
        items = getattr(profile.settings, field)
        assert items and all(i.strip() for i in items)
        assert len(set(items)) == len(items), f"{profile.tag} settings.{field} repeats an item"
    assert profile.story.openings and profile.story.closings
    assert profile.story.resolution_values and profile.story.conflict_sources
    for audience in ("children", "teen", "adult"):
        assert getattr(profile.sensitivities, audience)
    assert profile.avoid_stereotypes and profile.address
    if profile.names.source == "faker":
        from faker import Faker

        Faker(profile.names.faker_locale)  # the locale exists


def test_at_least_24_profiles_on_every_inhabited_continent():
    assert len(PROFILE_FILES) >= 24
    continents = {load_profile(t).continent for t in profile_tags()}
    assert continents >= {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}


def test_the_issue_s_cultures_are_all_there():
    assert set(REQUIRED_TAGS) <= set(profile_tags())


def test_no_profile_uses_the_cliche_plot_as_a_conflict_source():
    for tag in profile_tags():
        for c in load_profile(tag).story.conflict_sources:
            low = c.lower()
            assert not ("return" in low and "small town" in low), (tag, c)


def test_tags_match_case_insensitively():
    assert load_profile("ja-jp").tag == "ja-JP"
    assert load_profile("SW_ke").tag == "sw-KE"
    assert load_profile(" fil-ph ").tag == "fil-PH"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("ja", "ja-JP"),
        ("sw", "sw-KE"),
        ("jp-JA", "ja-JP"),
        ("zu", "zu-ZA"),
        ("pt-PT", "pt-BR"),
        ("swahili", "sw-KE"),
        ("JP", "ja-JP"),
    ],
)
def test_unknown_tag_names_the_closest_supported_ones(query, expected):
    with pytest.raises(ValueError) as err:
        load_profile(query)
    assert expected in str(err.value)
    assert expected in closest_tags(query)


def test_unknown_language_lists_all_of_that_language():
    with pytest.raises(ValueError) as err:
        load_profile("en-ZZ")
    for tag in ("en-US", "en-GB", "en-IN", "en-AU"):
        assert tag in str(err.value)


def test_supported_cultures_pairs_tags_with_names():
    pairs = supported_cultures()
    assert [t for t, _ in pairs] == profile_tags()
    assert dict(pairs)["ja-JP"] == "Japanese (Japan)"
    assert all(name for _, name in pairs)


def test_sensitivities_for_children_include_the_adult_and_teen_lists():
    p = load_profile("en-US")
    kids = p.sensitivities_for("children")
    assert set(p.sensitivities.adult) <= set(kids) and set(p.sensitivities.teen) <= set(kids)
    assert p.sensitivities_for("adult") == p.sensitivities.adult


def test_a_bad_profile_is_refused():
    data = yaml.safe_load(PROFILE_FILES[0].read_text(encoding="utf-8"))
    data["story"]["structure"] = "whatever"
    with pytest.raises(ValidationError):
        CultureProfile.model_validate(data)
    data = yaml.safe_load(PROFILE_FILES[0].read_text(encoding="utf-8"))
    data["names"] = {"source": "curated", "order": "given_first", "female": ["A"], "male": ["B"], "family": ["C"]}
    with pytest.raises(Exception, match="at least 20"):
        CultureProfile.model_validate(data)
