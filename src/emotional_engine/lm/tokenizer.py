"""Byte-level BPE tokenizer rebuilt from a GGUF's vocabulary and merges with the `tokenizers` library."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from emotional_engine.lm.gguf import CONTROL, USER_DEFINED, TokenizerData

log = logging.getLogger(__name__)

# llama.cpp's pre-tokenizer names -> the `tokenizers` pre-tokenizer that reproduces them.
_LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"  # noqa: E501 (the pattern as the tokenizer file gives it)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"  # noqa: E501
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _pre_tokenizer(pre: str):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("llama-bpe", "llama3", "smaug-bpe"):
        split = pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False)
        return pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    if pre not in ("gpt2", "default", "gpt-2"):
        log.warning("pre-tokenizer %r is not known here; using GPT-2's split, text may tokenize differently", pre)
    return byte_level


# The control tokens of the common chat templates (ChatML and Llama 3's <|...|>, Llama 2 and Mistral's
# <s> and [INST], Gemma's turns): for a model whose vocabulary is not visible (a remote server).
COMMON_CONTROL_TOKENS = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|\[/?SYS\]|<(?:start|end)_of_turn>|<(?:bos|eos|unk|pad)>|<</?SYS>>"
)


class Defuser:
    """`defuse(text)`: `text` with every special token's text in it broken by a zero-width space
    ("<|im_end|>" -> "<\u200b|im_end|>"), so text from users never encodes to a control token.
    `specials`: the vocabulary's special tokens, or a pattern where the vocabulary is unknown."""

    def __init__(self, specials: Iterable[str] | re.Pattern):
        if isinstance(specials, re.Pattern):
            self._special_text = specials
            return
        longest_first = sorted({s for s in specials if s}, key=len, reverse=True)  # one may contain another
        self._special_text = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def __call__(self, text: str) -> str:
        if self._special_text is None:
            return text
        return self._special_text.sub(lambda m: m[0][0] + "\u200b" + m[0][1:], text)


class BPETokenizer:
    def __init__(self, data: TokenizerData):
        vocab = {tok: i for i, tok in enumerate(data.tokens)}
        merges = [tuple(m.split(" ", 1)) for m in data.merges]
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=data.pre in ("llama-bpe", "llama3")))
        tk.pre_tokenizer = _pre_tokenizer(data.pre)
        tk.decoder = decoders.ByteLevel()
        specials = [t for t, ty in zip(data.tokens, data.token_types) if ty in (CONTROL, USER_DEFINED)]
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        self._tk = tk
        self.special_ids = {vocab[t] for t in specials}
        self.vocab_size = len(data.tokens)
        self.bos_id = data.bos_id
        self.add_bos = data.add_bos
        self.eos_ids = {i for i in [data.eos_id, *data.extra_eos_ids] if i is not None}
        self.chat_template = data.chat_template or CHATML
        self._tokens = data.tokens
        self.defuse = Defuser(specials)

    def encode(self, text: str) -> list[int]:
        ids = self._tk.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self._tk.decode(ids, skip_special_tokens=skip_special)

    def to_json(self) -> str:
        """The `tokenizers` serialisation (what constrained decoding builds its token table from)."""
        return self._tk.to_str()

    def token_text(self, i: int) -> str:
        return self._tokens[i]

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The messages through the chat template, their contents defused: only the template's own
        markers become special tokens."""
        bos = self._tokens[self.bos_id] if self.bos_id is not None else ""
        eos = self._tokens[min(self.eos_ids)] if self.eos_ids else ""
        safe = [{**m, "content": self.defuse(m["content"])} for m in messages]
        return render_chat(self.chat_template, safe, bos=bos, eos=eos, add_generation_prompt=add_generation_prompt)


def render_chat(
    template: str, messages: list[dict[str, str]], *, bos: str, eos: str, add_generation_prompt: bool
) -> str:
    """`messages` through a chat template (jinja, sandboxed). A last assistant message is continued: the
    messages before it are rendered with the generation prompt and its text follows, unclosed."""
    if messages and messages[-1]["role"] == "assistant":
        head = render_chat(template, messages[:-1], bos=bos, eos=eos, add_generation_prompt=True)
        return head + messages[-1]["content"]

    def raise_exception(msg):
        raise ValueError(f"chat template: {msg}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos
    )


class StreamDecoder:
    """Turns a growing list of token ids into text pieces, holding back incomplete UTF-8."""

    def __init__(self, tokenizer: BPETokenizer):
        self.tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # decode from here, so a piece is judged with a little left context
        self._read = 0  # ids before this are already emitted

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self.tok.decode(self.ids[self._prefix : self._read])
        text = self.tok.decode(self.ids[self._prefix :])
        if len(text) <= len(before) or text.endswith("\ufffd"):  # a multi-byte character split across tokens
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return text[len(before) :]
