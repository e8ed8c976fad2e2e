"""The safety categories and the head's classes.

Severity is label granularity: the head predicts one class per (category, severity) pair plus
`safe`, so a category's probability is the sum of its two severity classes.
"""

from __future__ import annotations

CATEGORIES = ("violence", "gore", "sexual", "self_harm", "substances", "profanity", "hate", "safe")
UNSAFE = CATEGORIES[:-1]
SEVERITIES = (1, 2)  # 0 is `safe`; 1 mild (peril, a kiss, a drink, "damn"); 2 strong (killing, graphic injury, ...)

# head classes, in this order: "safe", then "violence:1", "violence:2", "gore:1", ...
CLASSES = ("safe",) + tuple(f"{c}:{s}" for c in UNSAFE for s in SEVERITIES)


def class_of(category: str, severity: int) -> str:
    """The head class of a labelled sentence; `safe` has severity 0, every other category 1 or 2."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown safety category {category!r}; expected one of {', '.join(CATEGORIES)}")
    if category == "safe":
        if severity != 0:
            raise ValueError(f"a safe sentence has severity 0, not {severity}")
        return "safe"
    if severity not in SEVERITIES:
        raise ValueError(f"severity of {category} must be 1 (mild) or 2 (strong), not {severity}")
    return f"{category}:{severity}"
