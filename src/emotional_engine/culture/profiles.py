"""Culture profiles: per-culture data (names, address, settings, telling, sensitivities) kept as YAML.

The files live in ``emotional_engine/culture/profiles/<tag>.yaml`` and ship as package data; they
are read with :mod:`importlib.resources`, validated by :class:`CultureProfile`, and cached.
Tags are BCP 47 (``ja-JP``); lookups ignore case and accept ``_`` for ``-`` (see `emotional_engine.culture_tags`).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from emotional_engine.culture_tags import profile_dir, profile_tags, resolve_tag

Continent = Literal["Africa", "Asia", "Europe", "North America", "South America", "Oceania"]
Structure = Literal[
    "three_act",
    "freytag",
    "kishotenketsu",
    "episodic",
    "oral_call_and_response",
    "circular",
    "frame_tale",
    "heros_journey",
]
Audience = Literal["children", "teen", "adult"]

_MIN_CURATED = 20  # curated lists hold at least this many real, common names per category


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NonEmpty = Field(min_length=1)


class FakerMethods(_Strict):
    """Names of Faker methods that give romanised (Latin-script) names for one locale."""

    female: str = "first_name_female"
    male: str = "first_name_male"
    family_female: str = "last_name_female"
    family_male: str = "last_name_male"


class NameData(_Strict):
    """Where a culture's person names come from, and how they are ordered.

    ``source: faker`` draws from ``faker_locale`` with ``methods``; ``source: curated`` draws from the
    lists here. Either way ``family_female``/``family_male`` hold gendered surname forms (Russian
    Ivanova/Ivanov) where the culture has them, ``middle_*`` hold middle names that go between family
    and given name in family-first orders (Vietnamese Thị/Văn), and ``exclude`` names that Faker's
    data carries wrongly for this culture or gender (they are drawn again).
    """

    source: Literal["faker", "curated"]
    order: Literal["given_first", "family_first"]
    faker_locale: str | None = None
    methods: FakerMethods = FakerMethods()
    female: list[str] = []
    male: list[str] = []
    family: list[str] = []
    family_female: list[str] = []
    family_male: list[str] = []
    middle_female: list[str] = []
    middle_male: list[str] = []
    patronymic: bool = False  # the second name is the father's given name (Ethiopian naming)
    two_surnames: bool = False  # family is two surnames, father's then mother's (Spanish naming)
    exclude: list[str] = []
    note: str = ""

    @model_validator(mode="after")
    def _check_source(self) -> NameData:
        if self.source == "faker":
            if not self.faker_locale:
                raise ValueError("names.source 'faker' needs names.faker_locale")
            return self
        short = [k for k in ("female", "male") if len(getattr(self, k)) < _MIN_CURATED]
        if not self.patronymic:
            gendered = self.family_female and self.family_male
            if gendered and min(len(self.family_female), len(self.family_male)) < _MIN_CURATED:
                short.append("family_female/family_male")
            if not gendered and len(self.family) < _MIN_CURATED:
                short.append("family")
        if short:
            raise ValueError(f"curated names need at least {_MIN_CURATED} entries in: {', '.join(short)}")
        for k in ("female", "male", "family", "family_female", "family_male"):
            values = getattr(self, k)
            if len(set(values)) != len(values):
                dup = sorted({v for v in values if values.count(v) > 1})
                raise ValueError(f"names.{k} repeats {dup}")
        return self


class AddressForm(_Strict):
    term: str = Field(min_length=1)
    use: str = Field(min_length=1)  # who says it to whom, as it appears in English text


class Settings(_Strict):
    places: list[str] = NonEmpty
    foods: list[str] = NonEmpty
    festivals: list[str] = NonEmpty
    objects: list[str] = NonEmpty


class Story(_Strict):
    openings: list[str] = NonEmpty
    closings: list[str] = NonEmpty
    structure: Structure
    structure_notes: str = Field(min_length=1)
    resolution_values: list[str] = NonEmpty
    conflict_sources: list[str] = NonEmpty


class Sensitivities(_Strict):
    children: list[str] = NonEmpty
    teen: list[str] = NonEmpty
    adult: list[str] = NonEmpty


class SensitivityCheck(_Strict):
    """A known pattern the sensitivity checker looks for (culture/sensitivity.py); matched case-insensitively per
    sentence. It applies to its audience and the younger ones, like the sensitivities lists."""

    pattern: str = Field(min_length=3)
    reason: str = Field(min_length=3)
    kind: Literal["sensitivity", "stereotype"] = "sensitivity"
    audience: Audience = "adult"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import re

        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"pattern {v!r} is not a regular expression: {e}") from e
        return v


class CultureProfile(_Strict):
    tag: str = Field(pattern=r"^[a-z]{2,3}-[A-Z]{2}$")
    name: str = Field(min_length=1)
    language: str = Field(pattern=r"^[a-z]{2,3}$")
    continent: Continent
    names: NameData
    address: list[AddressForm] = NonEmpty
    settings: Settings
    story: Story
    sensitivities: Sensitivities
    avoid_stereotypes: list[str] = NonEmpty
    checks: list[SensitivityCheck] = []

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str) -> str:
        return v.lower()

    @model_validator(mode="after")
    def _tag_matches_language(self) -> CultureProfile:
        if self.tag.split("-")[0] != self.language:
            raise ValueError(f"tag {self.tag} does not start with language {self.language}")
        return self

    def sensitivities_for(self, audience: Audience) -> list[str]:
        """What to avoid or handle with care for an audience; younger audiences inherit the older lists' items."""
        order: list[Audience] = ["adult", "teen", "children"]
        out: list[str] = []
        for a in order[: order.index(audience) + 1]:
            out.extend(getattr(self.sensitivities, a))
        return out


@cache
def _load(canonical: str) -> CultureProfile:
    text = profile_dir().joinpath(f"{canonical}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    profile = CultureProfile.model_validate(data)
    if profile.tag != canonical:
        raise ValueError(f"profile file {canonical}.yaml holds tag {profile.tag}")
    return profile


def load_profile(tag: str) -> CultureProfile:
    """The validated profile for a BCP 47 tag (``ja-jp`` finds ``ja-JP``)."""
    return _load(resolve_tag(tag))


def supported_cultures() -> list[tuple[str, str]]:
    """(tag, English name) for every profile, sorted by tag."""
    return [(t, _load(t).name) for t in profile_tags()]
