"""Text helpers every layer uses; imports nothing from the package.

- `fence`: user-supplied text put in a prompt as labelled data;
- `estimate_tokens`: a token count where the tokenizer cannot be seen.
"""

from __future__ import annotations


def fence(label: str, text: str) -> str:
    """User-supplied text, fenced; angle brackets inside cannot close the fence."""
    clean = text.replace("<", "‹").replace(">", "›")
    return f"<{label}>\n{clean}\n</{label}>"


def estimate_tokens(text: str) -> int:
    """About four characters a token, for generators whose tokenizer we cannot see."""
    return len(text) // 4 + 1
