"""Cultural model: profile data per culture (YAML), romanised person names, and later sensitivity checks."""

from emotional_engine.culture.names import NameGenerator, Person, is_latin_name, known_names
from emotional_engine.culture.profiles import (
    CultureProfile,
    closest_tags,
    load_profile,
    profile_tags,
    resolve_tag,
    supported_cultures,
)

__all__ = ["CultureProfile", "NameGenerator", "Person", "closest_tags", "is_latin_name", "known_names", "load_profile",
           "profile_tags", "resolve_tag", "supported_cultures"]
