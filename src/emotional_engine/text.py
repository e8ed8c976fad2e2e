"""Text helpers every layer uses; imports nothing from the package.

- `fence`: user-supplied text put in a prompt as labelled data;
- `estimate_tokens`: a token count where the tokenizer cannot be seen;
- `split_sentences`, `sentence_breaks`: prose cut into sentences (the emotion model, the checkers, memory
  and the stream all cut at the same places);
- `strip_meta_lines`, `ends_a_sentence`, `trim_to_last_sentence`: what the model wrote about the story
  instead of in it dropped, and an unfinished last sentence found or trimmed.
"""

from __future__ import annotations

import re


def fence(label: str, text: str) -> str:
    """User-supplied text, fenced; angle brackets inside cannot close the fence."""
    clean = text.replace("<", "‹").replace(">", "›")
    return f"<{label}>\n{clean}\n</{label}>"


def estimate_tokens(text: str) -> int:
    """About four characters a token, for generators whose tokenizer we cannot see."""
    return len(text) // 4 + 1


# a sentence ends at . ! ? … (and any closing quote or bracket, which stays with it) when the next
# one starts with a capital or a digit; blank lines always end one
_SENT = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+(?=[\"'“‘(\[]?[A-Z0-9])|\n\s*\n+")


def sentence_breaks(text: str) -> list[re.Match]:
    """The gaps between sentences, exactly where `split_sentences` cuts (the match is the whitespace)."""
    return list(_SENT.finditer(text))


def split_sentences(text: str, normalize: bool = True) -> list[str]:
    """Split prose into sentences (on . ! ? … followed by a capitalised word, and on blank lines).
    `normalize=False` keeps each part's own whitespace, for text that is still being streamed."""
    if not normalize:
        return _SENT.split(text)
    out = []
    for part in _SENT.split(text.strip()):
        part = " ".join(part.split())
        if part:
            out.append(part)
    return out


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
_META_LINE = re.compile(
    r"^\s*(#+\s.*|\*\*[^*]+\*\*:?|(scene|part|chapter|title)\b[^.!?]{0,60}:?|[^.!?]{1,80}:)\s*$", re.I
)


_PLACEHOLDER = re.compile(r"^\s*\[[^\]\n]{1,40}\]\s*")  # a template slot left at a line's start: "[Title Sentence]"


def strip_meta_lines(text: str) -> str:
    """Drop lines the model wrote about the story instead of in it: headings, "Scene 2:", "Title: ...",
    and bracketed placeholders that open a line."""
    kept = []
    for line in text.splitlines():
        unslotted = _PLACEHOLDER.sub("", line)
        if not _META_LINE.match(unslotted) and (unslotted.strip() or not line.strip()):
            kept.append(unslotted)
    return "\n".join(kept).strip()


def ends_a_sentence(text: str) -> bool:
    return bool(_SENTENCE_END.search(text.rstrip()))


def trim_to_last_sentence(text: str) -> str:
    """Drop an unfinished last sentence (the model stopped mid-way); keep the text if none is whole."""
    text = text.rstrip()
    if not text or _SENTENCE_END.search(text):
        return text
    cut = max(text.rfind(c) for c in ".!?…")
    if cut < 0:
        return text
    end = cut + 1
    while end < len(text) and text[end] in "\"'”’)]":
        end += 1
    return text[:end]
