"""Sampler presets by name: a name alone sets all three settings, settings given beside it win, and an
unknown name is refused with the names there are."""

import pytest
from pydantic import ValidationError

from emotional_engine.domain import SAMPLER_PRESETS, StoryRequest, StorySampling


def test_a_presets_name_sets_its_settings_and_given_ones_win():
    assert (
        StoryRequest(premise="x", sampling="creative").sampling.temperature
        == SAMPLER_PRESETS["creative"]["temperature"]
    )
    s = StorySampling(preset="precise", temperature=0.7)
    assert (s.temperature, s.top_p) == (0.7, SAMPLER_PRESETS["precise"]["top_p"])
    assert StorySampling() == StorySampling(preset=None)  # no preset: the balanced defaults
    assert StorySampling().temperature == SAMPLER_PRESETS["balanced"]["temperature"]


def test_an_unknown_preset_names_the_ones_there_are():
    with pytest.raises(ValidationError, match="'precise', 'balanced', 'creative' or 'wild'"):
        StorySampling(preset="spicy")
