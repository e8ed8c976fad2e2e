"""Which block format each tensor of an optimised file is written in.

A recipe is a format for every weight matrix, with overrides by tensor kind:
`q4_k` (all Q4_K), `q4_k,token_embd=q8_0,output=q8_0` (the embeddings and the head kept at Q8_0), or
`keep` (each tensor as the parent file had it: what pruning and distilling write when no format is
asked for). Kinds are the GGUF names' parts: token_embd, output, attn_q, attn_k, attn_v, attn_output,
ffn_gate, ffn_up, ffn_down. Norms are always F32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q4_k": "Q4_K", "q5_k": "Q5_K", "q6_k": "Q6_K",
           "fp16": "F16", "f16": "F16", "f32": "F32"}  # fmt: skip
KINDS = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


class RecipeError(ValueError):
    pass


@dataclass
class Recipe:
    main: str | None  # the GGML type of every matrix; None: the parent's own
    overrides: dict[str, str] = field(default_factory=dict)  # kind -> GGML type
    parent: dict[str, str] = field(default_factory=dict)  # tensor name -> the parent's GGML type

    @classmethod
    def parse(cls, spec: str, parent: dict[str, str]) -> Recipe:
        """`spec` as in the module doc; `parent`: the parent file's type of each tensor."""
        head, *rest = [p.strip() for p in spec.split(",")]
        main = None if head.lower() == "keep" else _format(head)
        overrides = {}
        for part in rest:
            kind, eq, fmt = part.partition("=")
            if not eq or kind.strip() not in KINDS:
                raise RecipeError(f"{part!r}: an override is KIND=FORMAT with KIND one of {', '.join(KINDS)}")
            overrides[kind.strip()] = _format(fmt)
        return cls(main, overrides, parent)

    def kind_of(self, tensor: str) -> str:
        """The GGML type `tensor` (a GGUF name, `blk.3.ffn_down.weight`) is written in."""
        kind = tensor.split(".")[-2]
        if kind in self.overrides:
            return self.overrides[kind]
        if self.main is not None:
            return self.main
        return self.parent.get(tensor) or self.parent.get(_same_kind(tensor, self.parent)) or "F16"

    def describe(self) -> str:
        main = self.main or "keep"
        return ",".join([main, *(f"{k}={v}" for k, v in self.overrides.items())])


def _format(name: str) -> str:
    fmt = FORMATS.get(name.strip().lower())
    if fmt is None:
        raise RecipeError(f"unknown format {name.strip()!r}; choose one of {', '.join(sorted(set(FORMATS) - {'f16'}))}")
    return fmt


def _same_kind(tensor: str, parent: dict[str, str]) -> str | None:
    """A parent tensor of the same kind (a student's layer 7 takes the type of the parent's layers)."""
    kind = tensor.split(".")[-2]
    return next((name for name in parent if name.split(".")[-2] == kind), None)
