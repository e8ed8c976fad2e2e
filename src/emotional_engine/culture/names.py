"""Person names for a culture, romanised, in the culture's order, deterministic for a seed."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from typing import Literal

from emotional_engine.culture.profiles import CultureProfile, load_profile

Gender = Literal["female", "male"]
_PUNCT = set(" -'’.")
_MAX_TRIES = 2000


def is_latin_name(text: str) -> bool:
    """True when every character is a Latin letter (diacritics allowed) or name punctuation."""
    if not text.strip():
        return False
    for ch in text:
        if ch in _PUNCT:
            continue
        if not unicodedata.name(ch, "").startswith("LATIN"):
            return False
    return True


@dataclass(frozen=True)
class Person:
    given: str
    family: str
    full: str
    gender: Gender
    middle: str = ""


class NameGenerator:
    """``NameGenerator(profile, seed).person("female")`` -> a Person never repeated by this generator.

    Faker-backed profiles use the locale's romanised methods named in the profile; curated profiles
    draw from the profile's lists. Same profile, same seed, same installed Faker -> same names.
    """

    def __init__(self, profile: CultureProfile | str, seed: int = 0):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.seed = seed
        self._rng = random.Random(f"{self.profile.tag}:{seed}")
        self._seen: set[str] = set()
        self._exclude = {e.casefold() for e in self.profile.names.exclude}
        self._faker = None
        if self.profile.names.source == "faker":
            from faker import Faker

            self._faker = Faker(self.profile.names.faker_locale)
            self._faker.seed_instance(seed)

    # -- one part at a time --------------------------------------------------------------------------
    def _faker_call(self, method: str) -> str:
        fn = getattr(self._faker, method, None)
        if fn is None:
            raise ValueError(f"{self.profile.tag}: Faker locale {self.profile.names.faker_locale} has no {method}()")
        return str(fn()).strip()

    def _given(self, gender: Gender) -> str:
        n = self.profile.names
        if n.source == "faker":
            return self._faker_call(getattr(n.methods, gender))
        return self._rng.choice(n.female if gender == "female" else n.male)

    def _family(self, gender: Gender) -> str:
        if self.profile.names.two_surnames:
            first, second = self._one_family(gender), self._one_family(gender)
            return first if first == second else f"{first} {second}"
        return self._one_family(gender)

    def _one_family(self, gender: Gender) -> str:
        n = self.profile.names
        if n.patronymic:  # father's given name stands second
            return self._rng.choice(n.male)
        gendered = n.family_female if gender == "female" else n.family_male
        if gendered:
            return self._rng.choice(gendered)
        if n.family:
            return self._rng.choice(n.family)
        return self._faker_call(n.methods.family_female if gender == "female" else n.methods.family_male)

    def _middle(self, gender: Gender) -> str:
        n = self.profile.names
        pool = n.middle_female if gender == "female" else n.middle_male
        return self._rng.choice(pool) if pool else ""

    def _acceptable(self, *parts: str) -> bool:
        for part in parts:
            if not part:
                continue
            if not is_latin_name(part):
                return False
            if part.casefold() in self._exclude or any(w.casefold() in self._exclude for w in part.split()):
                return False
        return True

    # -- public ----------------------------------------------------------------------------------------
    def person(self, gender: Gender | None = None) -> Person:
        if gender not in (None, "female", "male"):
            raise ValueError(f"gender must be 'female', 'male' or None, not {gender!r}")
        for _ in range(_MAX_TRIES):
            g: Gender = gender or self._rng.choice(("female", "male"))
            given, family, middle = self._given(g), self._family(g), self._middle(g)
            if not self._acceptable(given, family, middle) or given == family:
                continue
            if self.profile.names.order == "family_first":
                full = " ".join(p for p in (family, middle, given) if p)
            else:
                full = " ".join(p for p in (given, middle, family) if p)
            if full in self._seen:
                continue
            self._seen.add(full)
            return Person(given=given, family=family, full=full, gender=g, middle=middle)
        raise RuntimeError(f"{self.profile.tag}: no new name after {_MAX_TRIES} draws ({len(self._seen)} used)")

    def people(self, n: int, gender: Gender | None = None) -> list[Person]:
        return [self.person(gender) for _ in range(n)]


def person_provider(locale: str):
    """Faker's person-name Provider class for a locale (its name lists), or None where it has none."""
    import importlib

    try:
        return importlib.import_module(f"faker.providers.person.{locale}").Provider
    except ModuleNotFoundError:
        return None


def _faker_list(locale: str, method: str, draws: int = 1500) -> list[str]:
    """The names behind a Faker person method: its list attribute (``first_name_female`` ->
    ``first_names_female``) where that is a plain list, plus ``draws`` seeded calls for what it composes."""
    from faker import Faker

    out: list[str] = []
    provider = person_provider(locale)
    if provider is not None:
        attrs = [method.replace("_name", "_names", 1)]
        if method.startswith("last_"):  # locales keep surnames under several names (pl_PL: unisex_last_names)
            attrs += [a for a in dir(provider) if a.endswith("last_names") and not a.startswith("_")]
        for attr in attrs:
            values = getattr(provider, attr, None) or ()
            out.extend(str(v) for v in values if "{{" not in str(v))
    fake = Faker(locale)
    fake.seed_instance(0)
    fn = getattr(fake, method)
    out.extend(str(fn()).strip() for _ in range(draws))
    return out


def known_names(profile: CultureProfile | str) -> dict[str, frozenset[str]]:
    """The given, family and middle names this culture's generator produces: {"given", "family", "middle"}.

    Read from the profile's lists or from the Faker provider's lists, Latin-script entries only, less
    ``exclude``; useful for telling which culture a name in a text belongs to without sampling.
    """
    p = load_profile(profile) if isinstance(profile, str) else profile
    n = p.names
    if n.source == "curated":
        given = [*n.female, *n.male]
        family = [*n.male] if n.patronymic else [*n.family, *n.family_female, *n.family_male]
    else:
        loc = n.faker_locale or ""
        given = [*_faker_list(loc, n.methods.female), *_faker_list(loc, n.methods.male)]
        family = [*n.family, *n.family_female, *n.family_male] or [
            *_faker_list(loc, n.methods.family_female),
            *_faker_list(loc, n.methods.family_male),
        ]
    exclude = {e.casefold() for e in n.exclude}

    def keep(names):
        return frozenset(x for x in names if is_latin_name(x) and x.casefold() not in exclude)

    middle = [*n.middle_female, *n.middle_male]
    return {"given": keep(given), "family": keep(family), "middle": keep(middle)}
