"""The supported culture tags: which BCP 47 tags have a profile, a tag's canonical spelling, and the
closest supported tags to an unknown one. Imports nothing from the package.

The tags are the file names of the profiles (``culture/profiles/<tag>.yaml``, package data); a tag's
name for `closest_tags` is the profile's ``name`` field, read without validating the profile. This
is data the basic layer may read (`domain.StoryRequest` checks and canonicalises its culture with
`resolve_tag`); the profiles themselves are loaded and validated by `culture.profiles`.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

import yaml


def profile_dir():
    """The folder of culture profiles (``<tag>.yaml``), a package-data Traversable."""
    return resources.files("emotional_engine").joinpath("culture").joinpath("profiles")


@cache
def _index() -> dict[str, str]:
    """lowercase tag -> canonical tag, from the file names."""
    out = {}
    for entry in profile_dir().iterdir():
        if entry.name.endswith(".yaml"):
            tag = entry.name[: -len(".yaml")]
            out[tag.lower()] = tag
    return dict(sorted(out.items()))


@cache
def _name(canonical: str) -> str:
    """The English name of a culture ("Japan"), from its profile's ``name`` field."""
    return str(yaml.safe_load(profile_dir().joinpath(f"{canonical}.yaml").read_text(encoding="utf-8"))["name"])


def profile_tags() -> list[str]:
    return list(_index().values())


def _normalise(tag: str) -> str:
    return tag.strip().replace("_", "-").lower()


def closest_tags(tag: str, n: int = 3) -> list[str]:
    """Supported tags nearest to ``tag``: those sharing a subtag with it (``ja``, ``JP``, ``jp-JA`` -> ja-JP) or
    whose name contains it (``swahili`` -> sw-KE), then the closest by spelling."""
    q = _normalise(tag)
    index = _index()
    parts = {p for p in q.split("-") if p}
    shared = [t for low, t in index.items() if parts & set(low.split("-"))]
    named = [t for t in index.values() if len(q) >= 3 and q in _name(t).lower()] if q else []
    fuzzy = [] if shared or named else [index[m] for m in difflib.get_close_matches(q, list(index), n=n, cutoff=0.5)]
    out: list[str] = []
    for t in shared + named + fuzzy:
        if t not in out:
            out.append(t)
    return out[: max(n, len(shared) + len(named))]


def resolve_tag(tag: str) -> str:
    """The canonical supported tag for ``tag`` (case-insensitive), or ValueError naming the closest ones."""
    index = _index()
    q = _normalise(tag)
    if q in index:
        return index[q]
    near = closest_tags(tag)
    hint = f"; closest: {', '.join(near)}" if near else ""
    raise ValueError(f"unknown culture {tag!r}{hint} (run `emotional-engine cultures` for all {len(index)})")
