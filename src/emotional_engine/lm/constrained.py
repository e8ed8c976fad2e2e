"""Constrained decoding: a logits processor that lets through only the tokens that keep the output
inside a regular language, so what the model writes always parses.

The matching is llguidance's (a maintained Rust library that works over any `tokenizers`
vocabulary, offline and on CPU): at each step its matcher gives the set of tokens whose bytes
keep the output a prefix of the language, every other token's logit becomes -inf, and once the
language is complete only end-of-sequence remains.

Callers above the runtime pass a `Regex` (the pattern alone); the generator binds it to its tokenizer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import llguidance
import numpy as np
import torch

from emotional_engine.lm.tokenizer import BPETokenizer


@functools.lru_cache(maxsize=4)
def _ll_tokenizer(tok: BPETokenizer) -> llguidance.LLTokenizer:
    """llguidance's view of `tok` (about a second to build for a 49k vocabulary, so kept)."""
    return llguidance.LLTokenizer(tok.to_json(), n_vocab=tok.vocab_size, eos_token=sorted(tok.eos_ids))


class RegexConstraint:
    """A logits processor for one request: its output stays within `regex` (a full match is the end).
    Stateful: it follows the request's tokens, so each request gets its own."""

    def __init__(self, tok: BPETokenizer, regex: str):
        self.matcher = llguidance.LLMatcher(_ll_tokenizer(tok), llguidance.LLMatcher.grammar_from_regex(regex))
        if self.matcher.is_error():
            raise ValueError(f"bad constraint {regex!r}: {self.matcher.get_error()}")
        self.vocab_size = tok.vocab_size
        self._prompt_len: int | None = None  # ids before the output, learnt on the first call
        self._seen = 0  # output tokens the matcher has consumed

    def __call__(self, ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        """ids: prompt + output so far; logits: (vocab,) -> (vocab,) with disallowed tokens at -inf."""
        if self._prompt_len is None:
            self._prompt_len = len(ids)
        new = ids[self._prompt_len + self._seen :]
        if new and not self.matcher.consume_tokens(new):
            raise RuntimeError(f"a token outside the constraint was sampled: {self.matcher.get_error()}")
        self._seen += len(new)
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = torch.zeros(logits.shape[0], dtype=torch.bool)  # the model's rows past the vocabulary stay out
        n = min(self.vocab_size, logits.shape[0])
        allowed[:n] = torch.from_numpy(bits[:n].astype(bool))
        return logits.masked_fill(~allowed, float("-inf"))


@dataclass(frozen=True)
class Regex:
    """Output within `pattern`, asked of any generator that takes logits processors without knowing
    its tokenizer: the generator binds it (`sampling.bind_processors`) to a `RegexConstraint` over
    its own tokenizer when the request starts."""

    pattern: str

    def bind(self, tok: BPETokenizer) -> RegexConstraint:
        return RegexConstraint(tok, self.pattern)
