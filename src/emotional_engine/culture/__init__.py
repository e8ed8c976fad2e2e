"""Cultural model: profile data per culture (YAML), romanised person names, and later sensitivity checks."""

from emotional_engine.culture.names import NameGenerator, Person, is_latin_name, known_names
from emotional_engine.culture.profiles import CultureProfile, load_profile, supported_cultures
from emotional_engine.culture_tags import closest_tags, profile_tags, resolve_tag

__all__ = [
    "CultureProfile",
    "NameGenerator",
    "Person",
    "closest_tags",
    "is_latin_name",
    "known_names",
    "load_profile",
    "profile_tags",
    "resolve_tag",
    "supported_cultures",
]
