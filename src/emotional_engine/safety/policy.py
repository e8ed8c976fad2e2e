"""Per-audience policy: for each category and severity, allow, flag or block (data in policy.yaml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from emotional_engine.culture.profiles import Audience

from .labels import SEVERITIES, UNSAFE

Action = Literal["allow", "flag", "block"]
AUDIENCES: tuple[Audience, ...] = ("children", "teen", "adult")
ACTIONS: tuple[Action, ...] = ("allow", "flag", "block")
POLICY_PATH = Path(__file__).with_name("policy.yaml")


@cache
def load_policy(path: Path = POLICY_PATH) -> dict[str, dict[str, dict[int, str]]]:
    """audience -> category -> severity -> action, checked to be complete."""
    raw = yaml.safe_load(Path(path).read_text())
    if set(raw) != set(AUDIENCES):
        raise ValueError(f"{path}: audiences must be exactly {AUDIENCES}, got {sorted(raw)}")
    for audience, table in raw.items():
        if set(table) != set(UNSAFE):
            raise ValueError(f"{path}: {audience} must list exactly {UNSAFE}, got {sorted(table)}")
        for category, row in table.items():
            if set(row) != set(SEVERITIES) or not set(row.values()) <= set(ACTIONS):
                raise ValueError(
                    f"{path}: {audience}.{category} must map severities {SEVERITIES} to one of {ACTIONS}, got {row}"
                )
    return raw


def action_for(category: str, severity: int, audience: str) -> Action:
    """What `audience` may do with a sentence of `category` at `severity` (`safe` is always allowed)."""
    policy = load_policy()
    if audience not in policy:
        raise ValueError(f"unknown audience {audience!r}; expected one of {', '.join(AUDIENCES)}")
    if category == "safe" or severity == 0:
        return "allow"
    if category not in policy[audience]:
        raise ValueError(f"unknown safety category {category!r}; expected one of {', '.join(UNSAFE)}")
    return policy[audience][category][severity]
