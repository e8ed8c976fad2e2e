"""Emotional arcs: the six shapes of Reagan et al. (2016) and custom curves, and per-scene targets.

Reagan, Mitchell, Kiley, Danforth and Dodds, "The emotional arcs of stories are dominated by six
basic shapes", EPJ Data Science 5:31 (2016). Each named arc is given by control points (t, valence)
with t the position in the story in [0, 1]; between points the curve is linear.
"""

from __future__ import annotations

import difflib

import numpy as np
from pydantic import BaseModel, Field, field_validator

# (t, valence) control points; the shapes follow the paper's six modes.
NAMED_ARCS: dict[str, tuple[tuple[float, float], ...]] = {
    "rags_to_riches": ((0.0, -0.7), (0.5, 0.0), (1.0, 0.8)),  # rise
    "tragedy": ((0.0, 0.7), (0.5, 0.1), (1.0, -0.8)),  # fall ("riches to rags")
    "man_in_a_hole": ((0.0, 0.4), (0.5, -0.7), (1.0, 0.7)),  # fall, then rise
    "icarus": ((0.0, -0.3), (0.5, 0.8), (1.0, -0.7)),  # rise, then fall
    "cinderella": ((0.0, -0.5), (0.3, 0.6), (0.65, -0.6), (1.0, 0.8)),  # rise, fall, rise
    "oedipus": ((0.0, 0.5), (0.3, -0.6), (0.65, 0.5), (1.0, -0.8)),  # fall, rise, fall
}


class Arc(BaseModel):
    """A valence curve over the story, from 2 to 20 control points."""

    name: str = "custom"
    points: list[tuple[float, float]] = Field(min_length=2, max_length=20)

    @field_validator("points")
    @classmethod
    def _check_points(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for t, v in pts:
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"arc point t={t} is outside [0, 1]")
            if not -1.0 <= v <= 1.0:
                raise ValueError(f"arc point valence={v} is outside [-1, 1]")
        ts = [t for t, _ in pts]
        if any(b <= a for a, b in zip(ts, ts[1:])):
            raise ValueError(f"arc points must have strictly increasing t, got {ts}")
        return pts

    def valence(self, t: float | np.ndarray) -> float | np.ndarray:
        """Valence at story position(s) t; constant beyond the first and last points."""
        ts, vs = zip(*self.points)
        out = np.interp(t, ts, vs)
        return float(out) if np.ndim(out) == 0 else out

    def targets(self, n: int) -> list[float]:
        """Target valence of each of n equal parts (scenes or windows), taken at their midpoints."""
        if n < 1:
            raise ValueError("the number of parts must be at least 1")
        return [round(float(v), 4) for v in self.valence((np.arange(n) + 0.5) / n)]


def get_arc(name: str) -> Arc:
    """A named arc; an unknown name is an error that lists the closest names."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in NAMED_ARCS:
        close = difflib.get_close_matches(key, NAMED_ARCS, n=3, cutoff=0.3) or list(NAMED_ARCS)
        raise ValueError(f"unknown arc {name!r}; did you mean {', '.join(close)}?")
    return Arc(name=key, points=list(NAMED_ARCS[key]))


def parse_arc_points(spec: str) -> Arc:
    """A custom arc from the CLI form "t,v;t,v;..." (e.g. "0,-0.5;0.5,0.8;1,0")."""
    try:
        pts = [tuple(float(x) for x in pair.split(",")) for pair in spec.strip().strip(";").split(";")]
    except ValueError:
        raise ValueError(f"arc points {spec!r} are not numbers in the form 't,v;t,v;...'") from None
    if any(len(p) != 2 for p in pts):
        raise ValueError(f"arc points {spec!r}: each point needs exactly two numbers, 't,v'")
    return Arc(points=pts)  # type: ignore[arg-type]
