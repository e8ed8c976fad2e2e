#!/usr/bin/env python
"""Speed, memory and quality benchmark of the builtin LM runtime on the embedded SmolLM2-135M Q4_1 GGUF.

Run from the repository root:

    .venv/bin/python benchmarks/lm_speed.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/lm_speed.py --quick    # smoke test (tiny repeat counts, 16 tokens)
    .venv/bin/python benchmarks/lm_speed.py --json out.json

Sections (see benchmarks/README.md for what each row means):
  0. the C++ kernels on every block format, the machine's memory bandwidth, and the physical bound on
     batch-1 decode (the bytes a token reads / that bandwidth)
  1. prefill tokens/s at 64 / 256 / 1024 prompt tokens (one request through the engine, max_tokens=1)
  2. decode tokens/s at 1 / 4 / 16 concurrent requests (threads calling ContinuousBatcher.generate)
  3. time to first token of a 20-token turn appended to a warm 500-token session
  4. resident memory after loading and after the 16-request run
  5. perplexity of each weight format on benchmarks/data/heldout.txt
  6. baselines measured in the same run: transformers (fp32 eager) and llama-cpp-python (if installed:
     decode, prefill and perplexity on the same file and text)

Every number is measured in this process, in this run; nothing is read from earlier runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before anything imports tqdm (transformers' GGUF loader)

import argparse
import gc
import json
import math
import platform
import queue
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from emotional_engine.lm import kernels
from emotional_engine.lm.batcher import ContinuousBatcher, common_prefix_len
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.generator import Completion, Piece
from emotional_engine.lm.gguf import embedded_model_path
from emotional_engine.lm.quant import WEIGHT_FORMATS, FP16Linear, NativeLinear, _linears, quantise
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.threads import run_in_passing_thread

HERE = Path(__file__).resolve().parent
HELDOUT = HERE / "data" / "heldout.txt"

# Prompt source for every speed measurement: tokenized, repeated and cut to exact token counts.
# Original text written for this benchmark.
PARAGRAPH = (
    "At the edge of the valley there was a mill that had not turned in forty years, and every spring "
    "the river tried to make it turn again. The water came down brown and loud from the hills, pushed "
    "against the rotten paddles, and fell away defeated. The miller's granddaughter, who was nine that "
    "year and had opinions about everything, decided that the river deserved better. She spent the "
    "summer with a borrowed saw, a bucket of nails and a book from the school library that explained, "
    "with diagrams, how a wheel converts falling water into useful work. Her grandmother watched from "
    "the kitchen window and said nothing, which in that family was the highest form of encouragement. "
    "By September the wheel had eight new paddles, each a slightly different length, and when the "
    "autumn rains arrived it shuddered, groaned, and began to move. It was not fast. It did not grind "
    "any grain. But it turned, slowly and stubbornly, through the whole of that wet season, and people "
    "walked out from the village on Sunday afternoons simply to stand on the bank and watch it go round. "
    "Years later, when she had become an engineer and built things that were fast and did grind grain, "
    "she still kept one of the old paddles above her desk, warped and grey, as a reminder that the first "
    "thing a machine has to do is begin."
)

DECODE_PROMPT_TOKENS = 64
SESSION_BASE_TOKENS = 500
SESSION_TURN_TOKENS = 20
SESSION_TTFT_TARGET_MS = 40.0
PPL_WINDOW = 512
PPL_TARGET_PCT = 1.0  # each format's perplexity against llama.cpp's on the same file and windows
TARGET_VS_LLAMA_CPP_B1 = 1.0
TARGET_VS_LLAMA_CPP_B16 = 6.0
TARGET_VS_LLAMA_CPP_PREFILL = 1.0
PREFILL_LENGTHS = [64, 256, 1024]
KERNEL_SHAPE = (4096, 4096)  # out x in: a matrix of 10-18 MB in the 4-8 bit formats, past the caches

STALL_S = 180.0  # no output from a request for this long = the engine is stuck

# rich falls back to 80 columns when stdout is not a terminal, which wraps the wide tables
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


class EngineFailure(RuntimeError):
    """The engine stopped answering (its scheduler thread died or stalled) or a request failed."""


def generate(
    engine: ContinuousBatcher,
    prompt_ids: list[int],
    params: SamplingParams,
    *,
    kv_key: str | None = None,
    on_piece: Callable[[Piece], None] | None = None,
) -> Completion:
    """ContinuousBatcher.generate, but never blocks forever: it fails fast if the scheduler thread is gone
    and after STALL_S seconds without a piece. Same submit/queue path, so the same timings."""
    q: queue.Queue[Piece] = queue.Queue()
    r = engine.submit(prompt_ids, params, q.put, kv_key=kv_key)
    pieces: list[Piece] = []
    last = time.perf_counter()
    try:
        while True:
            try:
                piece = q.get(timeout=1.0)
            except queue.Empty:
                thread = getattr(engine, "_thread", None)
                if thread is not None and not thread.is_alive():
                    raise EngineFailure("the engine's scheduler thread died (its traceback is on stderr)") from None
                if time.perf_counter() - last > STALL_S:
                    raise EngineFailure(f"no output from the engine for {STALL_S:.0f} s") from None
                continue
            last = time.perf_counter()
            if on_piece is not None:
                on_piece(piece)
            pieces.append(piece)
            if piece.finish_reason is not None:
                done = Completion.from_pieces(pieces)
                done.token_ids = list(r.out_ids)
                if done.finish_reason == "error":
                    raise EngineFailure(f"request failed in the engine: {done.error}")
                return done
    finally:
        r.cancelled = True  # no-op if it already finished


# ---- small helpers ------------------------------------------------------------------------------


def median(xs) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def p95(xs) -> float:
    return float(np.percentile(xs, 95)) if len(xs) else float("nan")


def fmt(x, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{nd}f}"


def repeat(fn: Callable[[], object], n: int, budget_s: float) -> list:
    """Call `fn` up to `n` times, stopping early (after at least one call) once `budget_s` is spent."""
    out, t0 = [], time.perf_counter()
    for _ in range(n):
        out.append(fn())
        if time.perf_counter() - t0 > budget_s:
            break
    return out


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # psutil is a test extra; /proc works on Linux without it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports KiB, macOS bytes


def mib(b: int) -> float:
    return b / 2**20


def kv_state(engine: ContinuousBatcher) -> dict:
    """Size of the engine's KV storage: the arena of running requests (if the engine has one) and the
    idle kept caches. Read defensively: these are engine internals."""
    out: dict = {}
    try:
        arena = getattr(engine, "arena", None)
        if arena is not None and getattr(arena, "k", None) is not None and arena.k.dim() == 5:
            out["kv_arena_mib"] = mib(arena.k.numel() * arena.k.element_size() * 2)
            out["kv_arena_slots"], out["kv_arena_cap_tokens"] = int(arena.k.shape[1]), int(arena.k.shape[3])
        out["kv_session_pool_mib"] = mib(engine.pool.idle_bytes)
    except Exception:  # noqa: BLE001 - diagnostics only
        pass
    return out


def machine_info() -> dict:
    cpu, flags, cores = platform.processor() or platform.machine(), set(), set()
    try:
        phys = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name":
                    cpu = val
                elif key == "flags" and not flags:
                    flags = set(val.split())
                elif key == "physical id":
                    phys = val
                elif key == "core id":
                    cores.add((phys, val))
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": len(cores) or None,
        "simd": simd,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


class Prompts:
    """Token-exact prompts cut from PARAGRAPH repeated; `offset` rotates the text so prompts differ."""

    def __init__(self, engine: ContinuousBatcher, min_tokens: int):
        tok = engine.tok
        self.bos = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
        one = len(tok.encode(PARAGRAPH)) - len(self.bos)
        text = " ".join([PARAGRAPH] * (min_tokens // max(one, 1) + 3))
        self.stream = tok.encode(text)[len(self.bos) :]
        self.paragraph_tokens = one

    def make(self, n: int, offset: int = 0) -> list[int]:
        body = self.stream[offset : offset + n - len(self.bos)]
        if len(body) != n - len(self.bos):
            raise ValueError(f"prompt source too short for {n} tokens at offset {offset}")
        return self.bos + body


# ---- 0. kernels and the physical bound ----------------------------------------------------------


def timed_us(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times) * 1e6


def bench_bandwidth(reps: int) -> dict:
    """Main memory's read bandwidth as decoding sees it: torch sums a 512 MiB buffer with its threads
    (every byte read once, as a decode step reads every weight once)."""
    x = torch.ones(2**27)
    us = timed_us(x.sum, reps)
    return {"buffer_mib": mib(x.numel() * 4), "reps": reps, "gb_s": x.numel() * 4 / us / 1e3}


def bench_kernels(reps: int) -> list[dict]:
    """Every block format the kernels read, one [out x in] = KERNEL_SHAPE matrix of random weights, at
    batch 1 and 16; fbgemm's fp16 GEMM (the fp16 format) on the same matrix for reference."""
    ee = kernels.ops()
    n, k = KERNEL_SHAPE
    w = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
    xs = {b: torch.randn(b, k, generator=torch.Generator().manual_seed(b)) for b in (1, 16)}
    layers = [("fp16 (fbgemm)", FP16Linear(torch.from_numpy(w)), n * k * 2)]
    for kind, number in kernels.GGML_TYPES.items() if ee is not None else ():
        lin = NativeLinear(ee, [(number, torch.from_numpy(quantise(w, kind)))], k)
        layers.append((kind, lin, sum(t.numel() for t in lin.weights)))
    rows = []
    for name, lin, nbytes in layers:
        us = {b: timed_us(lambda lin=lin, x=x: lin(x), reps if b == 1 else max(1, reps // 4)) for b, x in xs.items()}
        rows.append(
            {
                "format": name,
                "bytes": nbytes,
                "us_b1": us[1],
                "us_b16": us[16],
                "gb_s_b1": nbytes / us[1] / 1e3,
                "us_per_row_b16": us[16] / 16,
            }
        )
    return rows


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decode step reads: every projection and the output head (one embedding row
    and the norms are noise)."""
    total = 0
    for parent, name in _linears(model):
        lin = getattr(parent, name)
        if isinstance(lin, NativeLinear):
            total += sum(t.numel() * t.element_size() for t in lin.weights)
        elif isinstance(lin, FP16Linear):
            total += lin.in_features * lin.out_features * 2
        else:
            total += lin.weight.numel() * lin.weight.element_size()
    return total


def file_weight_bytes(path: Path) -> int:
    """What llama.cpp reads a token: every matrix of the file as stored (the tied embeddings are the head)."""
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors if len(t.shape) > 1)


# ---- 1. prefill ---------------------------------------------------------------------------------


def bench_prefill(
    engine: ContinuousBatcher, prompts: Prompts, lengths: list[int], reps: int, budget_s: float
) -> list[dict]:
    """One request at a time through the engine with max_tokens=1; prefill time = Completion.ttft_ms
    (submit -> first token sampled), so it includes the engine's 256-token prefill chunking."""
    greedy1 = SamplingParams(max_tokens=1, temperature=0)
    generate(engine, prompts.make(max(lengths)), greedy1)  # warm-up: RoPE tables, allocator, kernels
    rows = []
    for n in lengths:
        ids = prompts.make(n)
        ttfts = repeat(lambda ids=ids: generate(engine, ids, greedy1).ttft_ms, reps, budget_s)
        rates = [n / (t / 1000) for t in ttfts]
        rows.append(
            {
                "prompt_tokens": n,
                "reps": len(ttfts),
                "tok_s_median": median(rates),
                "ms_median": median(ttfts),
                "ms_p95": p95(ttfts),
            }
        )
    return rows


# ---- 2. decode ----------------------------------------------------------------------------------


def run_concurrent(engine: ContinuousBatcher, prompt_list: list[list[int]], max_tokens: int) -> dict:
    """len(prompt_list) threads each call engine.generate at once (greedy, ignore_eos)."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    B = len(prompt_list)
    barrier = threading.Barrier(B + 1)
    results: list[Completion | None] = [None] * B
    stamps: list[list[float]] = [[] for _ in range(B)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        st = stamps[i]

        def on_piece(p: Piece) -> None:
            if p.token_id is not None:
                st.append(time.perf_counter())

        barrier.wait()
        try:
            results[i] = generate(engine, prompt_list[i], params, on_piece=on_piece)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(B)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    comps = [c for c in results if c is not None]
    bad = [c for c in comps if c.finish_reason != "length" or c.completion_tokens != max_tokens]
    if bad:
        raise RuntimeError(f"{len(bad)} request(s) ended early: {bad[0].finish_reason} {bad[0].error or ''}")
    total = sum(c.completion_tokens for c in comps)
    per_req = [(c.completion_tokens - 1) / ((c.total_ms - c.ttft_ms) / 1000) for c in comps if c.total_ms > c.ttft_ms]
    # Steady state: from the moment the last request got its first token to the moment the first one
    # finished, every request is decoding; count the tokens streamed in that window.
    t_a, t_b = max(s[0] for s in stamps if s), min(s[-1] for s in stamps if s)
    n_win = sum(1 for s in stamps for t in s if t_a < t <= t_b)
    if t_b > t_a and n_win >= B:
        agg_decode = n_win / (t_b - t_a)
    else:  # too short to have a window (tiny max_tokens): fall back to per-request spans
        agg_decode = sum(c.completion_tokens - 1 for c in comps) / max(
            (max(c.total_ms for c in comps) - min(c.ttft_ms for c in comps)) / 1000, 1e-9
        )
    itl = [(b - a) * 1000 for s in stamps for a, b in zip(s, s[1:])]
    return {
        "batch": B,
        "wall_s": wall,
        "tokens": total,
        "e2e_tok_s": total / wall,
        "decode_tok_s": agg_decode,
        "per_request_decode_tok_s": per_req,
        "ttft_ms": [c.ttft_ms for c in comps],
        "itl_ms": itl,
        "token_ids": comps[0].token_ids,
    }


def bench_decode(
    engine: ContinuousBatcher, prompts: Prompts, batch: int, max_tokens: int, reps: int, budget_s: float
) -> dict:
    plist = [prompts.make(DECODE_PROMPT_TOKENS, offset=11 * i) for i in range(batch)]
    runs = repeat(lambda: run_concurrent(engine, plist, max_tokens), reps, budget_s)
    return {
        "batch": batch,
        "reps": len(runs),
        "max_tokens": max_tokens,
        "prompt_tokens": DECODE_PROMPT_TOKENS,
        "decode_tok_s": median([r["decode_tok_s"] for r in runs]),
        "e2e_tok_s": median([r["e2e_tok_s"] for r in runs]),
        "per_request_decode_tok_s": median([x for r in runs for x in r["per_request_decode_tok_s"]]),
        "itl_ms_median": median([x for r in runs for x in r["itl_ms"]]),
        "itl_ms_p95": p95([x for r in runs for x in r["itl_ms"]]),
        "ttft_ms_median": median([x for r in runs for x in r["ttft_ms"]]),
        "ttft_ms_p95": p95([x for r in runs for x in r["ttft_ms"]]),
        "token_ids": runs[0]["token_ids"],
    }


# ---- 3. session TTFT ----------------------------------------------------------------------------


def bench_session(engine: ContinuousBatcher, prompts: Prompts, turns: int, cold_reps: int) -> dict:
    greedy1 = SamplingParams(max_tokens=1, temperature=0)
    sid = "lm-speed-bench-session"
    ids = prompts.make(SESSION_BASE_TOKENS + turns * SESSION_TURN_TOKENS, offset=5)
    engine.drop_cache(sid)
    first = generate(engine, ids[:SESSION_BASE_TOKENS], greedy1, kv_key=sid)  # builds the kept cache
    ttfts, cached = [], []
    for k in range(1, turns + 1):
        c = generate(engine, ids[: SESSION_BASE_TOKENS + k * SESSION_TURN_TOKENS], greedy1, kv_key=sid)
        ttfts.append(c.ttft_ms)
        cached.append(c.cached_tokens)
    engine.drop_cache(sid)
    # For contrast: the same first turn (520 tokens) with no cache key, i.e. a full prefill.
    cold_ids = ids[: SESSION_BASE_TOKENS + SESSION_TURN_TOKENS]
    cold = [generate(engine, cold_ids, greedy1).ttft_ms for _ in range(cold_reps)]
    reused = min(cached) >= SESSION_BASE_TOKENS
    return {
        "base_tokens": SESSION_BASE_TOKENS,
        "turn_tokens": SESSION_TURN_TOKENS,
        "turns": turns,
        "build_ttft_ms": first.ttft_ms,
        "ttft_ms_median": median(ttfts),
        "ttft_ms_p95": p95(ttfts),
        "ttft_ms": ttfts,
        "cached_tokens": cached,
        "prefix_reused": reused,
        "cold_ttft_ms_median": median(cold),
        "target_ms": SESSION_TTFT_TARGET_MS,
        "meets_target": reused and median(ttfts) <= SESSION_TTFT_TARGET_MS,
    }


# ---- 5. perplexity ------------------------------------------------------------------------------


def ppl_windows(ids: list[int], window: int, max_windows: int) -> list[list[int]]:
    """Non-overlapping windows of `window` input tokens and the one they predict next (the same for
    every runtime)."""
    chunks = [ids[start : start + window + 1] for start in range(0, len(ids) - 1, window)]
    return [c for c in chunks if len(c) >= 2][:max_windows]


@torch.inference_mode()
def perplexity(model, ids: list[int], window: int, max_windows: int) -> dict:
    """Each window predicting its next tokens with model.forward(idx, targets); ppl = exp(total NLL /
    total predicted tokens)."""
    nll, count, windows = 0.0, 0, 0
    for chunk in ppl_windows(ids, window, max_windows):
        x = torch.tensor(chunk[:-1], dtype=torch.long)[None]
        y = torch.tensor(chunk[1:], dtype=torch.long)[None]
        _, loss = model(x, y)
        nll += float(loss) * y.numel()
        count += y.numel()
        windows += 1
    return {"ppl": math.exp(nll / count), "tokens": count, "windows": windows}


# ---- 6. baselines -------------------------------------------------------------------------------


def bench_transformers(path: Path, prompt: list[int], max_tokens: int, reps: int, budget_s: float) -> dict:
    try:
        import transformers
        from transformers import AutoModelForCausalLM
        from transformers.generation.streamers import BaseStreamer
    except ImportError:
        return {"status": "not installed"}
    transformers.logging.set_verbosity_error()
    t = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    except Exception as e:  # noqa: BLE001 - a baseline failing must not sink the run
        return {"status": f"failed to load: {type(e).__name__}: {e}"}
    load_s = time.perf_counter() - t

    class Clock(BaseStreamer):  # put() gets the prompt first, then each new token
        def __init__(self):
            self.stamps: list[float] = []

        def put(self, value):
            self.stamps.append(time.perf_counter())

        def end(self):
            pass

    x = torch.tensor([prompt], dtype=torch.long)
    mask = torch.ones_like(x)
    eos = getattr(model.generation_config, "eos_token_id", None)
    pad = eos[0] if isinstance(eos, list) else eos

    def once(n_new: int = max_tokens) -> dict:
        clk = Clock()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                x,
                attention_mask=mask,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                do_sample=False,
                streamer=clk,
                pad_token_id=pad,
            )
        t1 = time.perf_counter()
        new = out[0, x.shape[1] :].tolist()
        first = clk.stamps[1] if len(clk.stamps) > 1 else t1
        return {
            "e2e": len(new) / (t1 - t0),
            "decode": (len(new) - 1) / max(t1 - first, 1e-9),
            "ttft_ms": (first - t0) * 1000,
            "tokens": new,
        }

    once(min(8, max_tokens))  # warm-up (short: eager transformers is the slowest thing in this run)
    runs = repeat(once, reps, budget_s)
    model = None  # the weights go before the next baseline loads
    gc.collect()
    return {
        "status": "ok",
        "version": transformers.__version__,
        "load_s": load_s,
        "reps": len(runs),
        "decode_tok_s": median([r["decode"] for r in runs]),
        "e2e_tok_s": median([r["e2e"] for r in runs]),
        "ttft_ms_median": median([r["ttft_ms"] for r in runs]),
        "token_ids": runs[0]["tokens"],
    }


def bench_llama_cpp(
    path: Path,
    prompt: list[int],
    max_tokens: int,
    reps: int,
    budget_s: float,
    eos_ids: set[int],
    threads: int,
    prefill_prompts: dict[int, list[int]],
    ppl_chunks: list[list[int]],
) -> dict:
    try:
        import llama_cpp
    except ImportError:
        return {"status": "not installed"}
    t = time.perf_counter()
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=threads, verbose=False)
    except Exception as e:  # noqa: BLE001
        return {"status": f"failed to load: {type(e).__name__}: {e}"}
    load_s = time.perf_counter() - t
    eos = sorted(set(eos_ids) | {llm.token_eos()})

    def once() -> dict:
        stamps: list[float] = []

        def clock_and_ban_eos(input_ids, scores):  # called once per sampled token, after its eval
            stamps.append(time.perf_counter())
            scores[eos] = -np.inf  # generate exactly max_tokens, like ignore_eos=True on our side
            return scores

        llm.reset()  # no prompt-prefix reuse from the previous run
        t0 = time.perf_counter()
        out = llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=0.0,
            repeat_penalty=1.0,
            logits_processor=llama_cpp.LogitsProcessorList([clock_and_ban_eos]),
        )
        t1 = time.perf_counter()
        n = int(out["usage"]["completion_tokens"])
        first = stamps[0] if stamps else t1
        toks = [int(i) for i in llm.input_ids[len(prompt) : llm.n_tokens]]
        return {
            "e2e": n / (t1 - t0),
            "decode": (n - 1) / max(t1 - first, 1e-9),
            "ttft_ms": (first - t0) * 1000,
            "n": n,
            "tokens": toks,
        }

    def prefill(ids: list[int]) -> float:  # ms to evaluate the prompt from an empty context
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        return (time.perf_counter() - t0) * 1000

    once()  # warm-up
    runs = repeat(once, reps, budget_s)
    prefill(prefill_prompts[max(prefill_prompts)])
    prefills = []
    for n, ids in prefill_prompts.items():
        ms = repeat(lambda ids=ids: prefill(ids), reps, budget_s)
        prefills.append(
            {"prompt_tokens": n, "reps": len(ms), "ms_median": median(ms), "tok_s_median": n / median(ms) * 1000}
        )
    close = getattr(llm, "close", None)
    if close is not None:
        close()
    llm = None  # the model goes before the next one loads
    gc.collect()
    ppl = llama_cpp_perplexity(llama_cpp, path, threads, ppl_chunks)
    return {
        "status": "ok",
        "version": getattr(llama_cpp, "__version__", "?"),
        "load_s": load_s,
        "reps": len(runs),
        "threads": threads,
        "completion_tokens": runs[0]["n"],
        "decode_tok_s": median([r["decode"] for r in runs]),
        "e2e_tok_s": median([r["e2e"] for r in runs]),
        "ttft_ms_median": median([r["ttft_ms"] for r in runs]),
        "token_ids": runs[0]["tokens"],
        "prefill": prefills,
        "perplexity": ppl,
    }


def llama_cpp_perplexity(llama_cpp, path: Path, threads: int, chunks: list[list[int]]) -> dict:
    """llama.cpp's logits for every position of each window (`logits_all`), scored like ours."""
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=max(map(len, chunks)) + 8, n_threads=threads, logits_all=True, verbose=False
    )
    nll, count = 0.0, 0
    for chunk in chunks:
        llm.reset()
        llm.eval(chunk[:-1])
        logits = torch.from_numpy(np.array(llm.scores[: len(chunk) - 1], dtype=np.float64))
        nll -= float(logits.log_softmax(-1).gather(1, torch.tensor(chunk[1:])[:, None]).sum())
        count += len(chunk) - 1
    close = getattr(llm, "close", None)
    if close is not None:
        close()
    return {"ppl": math.exp(nll / count), "tokens": count, "windows": len(chunks)}


# ---- report -------------------------------------------------------------------------------------


def section(title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def took(t0: float, results: dict, key: str) -> None:
    dt = time.perf_counter() - t0
    results.setdefault("section_s", {})[key] = dt
    console.print(f"[dim]({key}: {dt:.1f} s)[/dim]")


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")


def decode_table(title: str, rows: list[tuple[str, dict]]) -> Table:
    tb = Table(title=title, title_justify="left")
    for col in (
        "format",
        "concurrent",
        "reps",
        "decode tok/s (aggregate)",
        "decode tok/s per request",
        "end-to-end tok/s",
        "inter-token ms p50 / p95",
        "TTFT ms p50 / p95",
    ):
        tb.add_column(col, justify="right")
    for fmt_name, r in rows:
        tb.add_row(
            fmt_name,
            str(r["batch"]),
            str(r["reps"]),
            fmt(r["decode_tok_s"]),
            fmt(r["per_request_decode_tok_s"]),
            fmt(r["e2e_tok_s"]),
            f"{fmt(r['itl_ms_median'])} / {fmt(r['itl_ms_p95'])}",
            f"{fmt(r['ttft_ms_median'], 0)} / {fmt(r['ttft_ms_p95'], 0)}",
        )
    return tb


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--formats",
        default=",".join(WEIGHT_FORMATS),
        help="weight formats, comma separated (default: %(default)s). Full speed rows for the first "
        "listed, batch-1 decode for the others, perplexity for all",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: 1 repeat everywhere, max_tokens 16, 3 session turns"
    )
    ap.add_argument("--json", metavar="FILE", type=Path, help="also write every number to FILE as JSON")
    ap.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded SmolLM2-135M Q4_1)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice); llama.cpp gets the same number",
    )
    ap.add_argument("--max-tokens", type=int, default=None, help="decode length (default 128, 16 with --quick)")
    ap.add_argument("--no-baselines", action="store_true", help="skip transformers and llama-cpp-python")
    args = ap.parse_args(argv)
    fmts = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in fmts if f not in WEIGHT_FORMATS]
    if not fmts or unknown:
        ap.error(f"--formats: unknown {unknown or 'empty'}; choose from {', '.join(WEIGHT_FORMATS)}")
    args.formats = list(dict.fromkeys(fmts))
    return args


def write_json(path: Path, res: dict) -> None:
    def strip(o):  # token ids are for the agreement check only; keep the JSON about numbers
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k != "token_ids"}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strip(res), indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"wrote {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res: dict = {}
    t_start = time.perf_counter()
    try:
        run(args, res)
        rc = 0
    except EngineFailure as e:
        console.print(f"[bold red]benchmark aborted:[/bold red] {e}")
        res["error"] = str(e)
        rc = 1
    res["elapsed_s"] = time.perf_counter() - t_start
    console.print(
        f"total time {res['elapsed_s']:.0f} s"
        + ("  [yellow](--quick: smoke test only, do not quote these numbers)[/yellow]" if args.quick else "")
    )
    if args.json:
        write_json(args.json, res)
    return rc


def run(args: argparse.Namespace, res: dict) -> None:
    q = args.quick
    max_tokens = args.max_tokens or (16 if q else 128)
    primary = args.formats[0]
    others = [f for f in args.formats if f != primary]
    path = Path(args.model) if args.model else embedded_model_path()

    # repeat counts and per-section time budgets (a section stops repeating once its budget is spent)
    reps = dict(
        prefill=1 if q else 5,
        b1=1 if q else 3,
        b4=1 if q else 3,
        b16=1 if q else 2,
        ref=1 if q else 3,
        turns=3 if q else 10,
        cold=1 if q else 3,
        ppl_windows=1 if q else 64,
        base=1 if q else 3,
        kernel=3 if q else 40,
        bandwidth=2 if q else 7,
    )
    budget = dict(prefill=15.0, b1=25.0, b4=25.0, b16=45.0, ref=20.0, base=30.0)

    res.update(
        machine=machine_info(),
        model=str(path),
        quick=q,
        max_tokens=max_tokens,
        formats=args.formats,
        primary_format=primary,
    )
    m = res["machine"]
    console.print(f"[bold]builtin LM benchmark[/bold]  {path.name}")
    console.print(
        f"CPU: {m['cpu']}  |  logical CPUs {m['logical_cpus']} (usable {m['usable_cpus']}, physical cores "
        f"{m['physical_cores'] or '?'})  |  SIMD: {' '.join(m['simd']) or '-'}"
    )
    console.print(
        f"python {m['python']}  |  torch {m['torch']}  |  torch threads {m['torch_threads']}  |  "
        f"formats {', '.join(args.formats)} (speed rows: {primary})  |  "
        f"{'QUICK smoke test, numbers are not meaningful' if q else 'full run'}"
    )

    # ---- 0. kernels and memory bandwidth --------------------------------------------------------
    t0 = section(f"0. kernels ({kernels.ops().path() if kernels.ops() else 'not built'}) and memory bandwidth")
    # in a thread that exits afterwards: a second OpenMP team would slow the runtime's (threads.py)
    res["bandwidth"] = run_in_passing_thread(lambda: bench_bandwidth(reps["bandwidth"]))
    res["kernels"] = run_in_passing_thread(lambda: bench_kernels(reps["kernel"]))
    n_out, n_in = KERNEL_SHAPE
    tb = Table(title=f"one {n_out} x {n_in} matrix, random weights", title_justify="left")
    for col in ("format", "MiB", "us batch 1", "GB/s batch 1", "us batch 16", "us a row at 16"):
        tb.add_column(col, justify="right")
    for r in res["kernels"]:
        tb.add_row(
            r["format"], fmt(mib(r["bytes"]), 2), fmt(r["us_b1"], 0), fmt(r["gb_s_b1"]), fmt(r["us_b16"], 0),
            fmt(r["us_per_row_b16"], 0),
        )  # fmt: skip
    console.print(tb)
    console.print(
        f"memory read bandwidth: {res['bandwidth']['gb_s']:.1f} GB/s (torch sums a "
        f"{res['bandwidth']['buffer_mib']:.0f} MiB buffer, median of {res['bandwidth']['reps']})"
    )
    took(t0, res, "kernels")

    # ---- load ---------------------------------------------------------------------------------
    t0 = section(f"load ({primary})")
    rss0 = rss_bytes()
    t = time.perf_counter()
    gen = BuiltinGenerator.load(path, weight_format=primary)
    engine = gen.batcher
    res["load"] = {
        "format": engine.model.weight_format,
        "load_s": time.perf_counter() - t,
        "row_multiple": engine.model.row_multiple,
        "weight_bytes_per_token": weight_bytes_per_token(engine.model),
    }
    mem = {
        "before_load_rss_mib": mib(rss0),
        "after_load_rss_mib": mib(rss_bytes()),
        "after_load_peak_mib": mib(peak_rss_bytes()),
        "after_load_kv": kv_state(engine),
    }
    res["memory"] = mem
    console.print(
        f"loaded in {res['load']['load_s']:.1f} s (batch-invariant row multiple {engine.model.row_multiple}); "
        f"RSS {mem['after_load_rss_mib']:.0f} MiB (before load {mem['before_load_rss_mib']:.0f} MiB)"
    )
    prompts = Prompts(engine, 1024 + SESSION_BASE_TOKENS + 16 * 11 + 64)
    took(t0, res, "load")

    # ---- 1. prefill ---------------------------------------------------------------------------
    t0 = section("1. prefill (one request through the engine, max_tokens=1; time = ttft_ms)")
    res["prefill"] = bench_prefill(engine, prompts, PREFILL_LENGTHS, reps["prefill"], budget["prefill"])
    tb = Table(title=f"prefill, {primary}", title_justify="left")
    for col in ("prompt tokens", "reps", "tok/s (median)", "ms median", "ms p95"):
        tb.add_column(col, justify="right")
    for r in res["prefill"]:
        tb.add_row(
            str(r["prompt_tokens"]), str(r["reps"]), fmt(r["tok_s_median"]), fmt(r["ms_median"]), fmt(r["ms_p95"])
        )
    console.print(tb)
    took(t0, res, "prefill")

    # ---- 2. decode ----------------------------------------------------------------------------
    t0 = section(
        f"2. decode ({max_tokens} tokens per request, greedy, ignore_eos, {DECODE_PROMPT_TOKENS}-token prompts)"
    )
    generate(engine, prompts.make(DECODE_PROMPT_TOKENS), SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    decode: dict[str, dict[str, dict]] = {primary: {}}
    for b, key in ((1, "b1"), (4, "b4"), (16, "b16")):
        decode[primary][str(b)] = bench_decode(engine, prompts, b, max_tokens, reps[key], budget[key])
    mem["after_b16_rss_mib"] = mib(rss_bytes())
    mem["after_b16_peak_mib"] = mib(peak_rss_bytes())
    mem["after_b16_kv"] = kv_state(engine)
    res["decode"] = decode
    console.print(decode_table(f"decode, {primary}", [(primary, r) for r in decode[primary].values()]))
    took(t0, res, "decode")

    # ---- 3. session TTFT ----------------------------------------------------------------------
    t0 = section(f"3. TTFT of a {SESSION_TURN_TOKENS}-token turn on a warm {SESSION_BASE_TOKENS}-token session")
    s = bench_session(engine, prompts, reps["turns"], reps["cold"])
    res["session"] = s
    tb = Table(title=f"session turn TTFT, {primary}", title_justify="left")
    for col in (
        "turns",
        "TTFT ms median",
        "TTFT ms p95",
        "cached tokens (min..max)",
        "prefix reused",
        f"no-session TTFT ({SESSION_BASE_TOKENS + SESSION_TURN_TOKENS} tok)",
        "target",
        "result",
    ):
        tb.add_column(col, justify="right")
    tb.add_row(
        str(s["turns"]),
        fmt(s["ttft_ms_median"]),
        fmt(s["ttft_ms_p95"]),
        f"{min(s['cached_tokens'])}..{max(s['cached_tokens'])}",
        "yes" if s["prefix_reused"] else "[red]NO[/red]",
        f"{fmt(s['cold_ttft_ms_median'])} ms",
        f"<= {SESSION_TTFT_TARGET_MS:.0f} ms",
        verdict(s["meets_target"]),
    )
    console.print(tb)
    took(t0, res, "session")

    # ---- 4. memory (printed here, measured at load and right after the batch-16 run) -----------
    t0 = section("4. memory")
    tb = Table(title="resident memory (MiB)", title_justify="left")
    for col in ("when", "RSS", "peak RSS so far (ru_maxrss)", "KV arena (slots x tokens)", "idle session KV"):
        tb.add_column(col, justify="right")

    def kv_cols(kv: dict) -> tuple[str, str]:
        arena = (
            f"{kv['kv_arena_mib']:,.0f} ({kv['kv_arena_slots']} x {kv['kv_arena_cap_tokens']})"
            if "kv_arena_mib" in kv
            else "-"
        )
        return arena, fmt(kv.get("kv_session_pool_mib"), 0)

    tb.add_row("before load", fmt(mem["before_load_rss_mib"], 0), "-", "-", "-")
    tb.add_row(
        f"after load ({primary})",
        fmt(mem["after_load_rss_mib"], 0),
        fmt(mem["after_load_peak_mib"], 0),
        *kv_cols(mem["after_load_kv"]),
    )
    tb.add_row(
        "after 16 concurrent",
        fmt(mem["after_b16_rss_mib"], 0),
        fmt(mem["after_b16_peak_mib"], 0),
        *kv_cols(mem["after_b16_kv"]),
    )
    console.print(tb)
    took(t0, res, "memory")

    # ---- 5. perplexity (+ batch-1 decode of the other formats, for reference) ------------------
    t0 = section(f"5. perplexity on {HELDOUT.name} (windows of {PPL_WINDOW} tokens)")
    held_ids = engine.tok.encode(HELDOUT.read_text(encoding="utf-8"))
    # perplexity in passing threads, so that the main thread never holds an OpenMP team (threads.py)
    ppl = {
        primary: run_in_passing_thread(lambda m=engine.model: perplexity(m, held_ids, PPL_WINDOW, reps["ppl_windows"]))
    }
    engine.close()
    del gen, engine
    gc.collect()
    for f in others:
        console.print(f"[dim]loading {f} ...[/dim]")
        g2 = BuiltinGenerator.load(path, weight_format=f)
        generate(
            g2.batcher, prompts.make(DECODE_PROMPT_TOKENS), SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
        )
        decode[f] = {"1": bench_decode(g2.batcher, prompts, 1, max_tokens, reps["ref"], budget["ref"])}
        ppl[f] = run_in_passing_thread(
            lambda g2=g2: perplexity(g2.batcher.model, held_ids, PPL_WINDOW, reps["ppl_windows"])
        )
        g2.batcher.close()
        del g2
        gc.collect()
    ref = ppl.get("fp32")
    for p in ppl.values():
        p["rel_diff_vs_fp32_pct"] = None if ref is None else 100 * (p["ppl"] - ref["ppl"]) / ref["ppl"]
    res["perplexity"] = ppl
    tb = Table(
        title=f"perplexity ({len(held_ids)} tokens in file; against llama.cpp in the summary)", title_justify="left"
    )
    for col in ("format", "windows", "tokens scored", "ppl", "vs fp32 (the same blocks dequantised)"):
        tb.add_column(col, justify="right")
    for f, p in ppl.items():
        d = p["rel_diff_vs_fp32_pct"]
        tb.add_row(f, str(p["windows"]), str(p["tokens"]), fmt(p["ppl"], 3), "-" if d is None else f"{d:+.3f} %")
    console.print(tb)
    if others:
        console.print(
            decode_table(
                "batch-1 decode of the other formats (reference)",
                [(f, decode[f]["1"]) for f in others] + [(primary, decode[primary]["1"])],
            )
        )
    took(t0, res, "perplexity")

    # ---- 6. baselines -------------------------------------------------------------------------
    t0 = section(f"6. baselines (batch 1, greedy, {max_tokens} tokens, same {DECODE_PROMPT_TOKENS}-token prompt)")
    bprompt = prompts.make(DECODE_PROMPT_TOKENS)
    if args.no_baselines:
        base = {"transformers": {"status": "skipped"}, "llama_cpp": {"status": "skipped"}}
    else:
        from emotional_engine.lm.gguf import read_metadata

        tokd = read_metadata(path)[1]
        eos_ids = {i for i in [tokd.eos_id, *tokd.extra_eos_ids] if i is not None}
        console.print("[dim]transformers ...[/dim]")
        base = {"transformers": bench_transformers(path, bprompt, max_tokens, reps["base"], budget["base"])}
        console.print("[dim]llama-cpp-python ...[/dim]")
        base["llama_cpp"] = bench_llama_cpp(
            path,
            bprompt,
            max_tokens,
            reps["base"],
            budget["base"],
            eos_ids,
            torch.get_num_threads(),
            {n: prompts.make(n) for n in PREFILL_LENGTHS},
            ppl_windows(held_ids, PPL_WINDOW, reps["ppl_windows"]),
        )
    res["baselines"] = base
    ours_ref_tokens = (decode.get("fp32") or decode[primary])["1"]["token_ids"]
    tb = Table(title="baselines, batch 1", title_justify="left")
    for col in (
        "backend",
        "status",
        "load s",
        "reps",
        "decode tok/s",
        "end-to-end tok/s",
        "TTFT ms",
        "greedy tokens equal to ours",
    ):
        tb.add_column(col, justify="right")
    for name, label in (("transformers", "transformers fp32"), ("llama_cpp", "llama.cpp Q4_1")):
        b = base[name]
        if b.get("status") == "ok":
            b["same_prefix_as_ours"] = common_prefix_len(b["token_ids"], ours_ref_tokens)
            tb.add_row(
                f"{label} {b['version']}",
                "ok",
                fmt(b["load_s"]),
                str(b["reps"]),
                fmt(b["decode_tok_s"]),
                fmt(b["e2e_tok_s"]),
                fmt(b["ttft_ms_median"], 0),
                f"{b['same_prefix_as_ours']}/{len(b['token_ids'])}",
            )
        else:
            tb.add_row(label, b.get("status", "?"), "-", "-", "-", "-", "-", "-")
    console.print(tb)
    took(t0, res, "baselines")

    # ---- ratios -------------------------------------------------------------------------------
    ours1, ours16 = decode[primary]["1"], decode[primary]["16"]
    lc, hf = base["llama_cpp"], base["transformers"]
    lc_ok = lc.get("status") == "ok"
    ratios = []

    def ratio(label: str, ours: float, theirs: float | None, status: str, target: float | None) -> None:
        r = ours / theirs if theirs else None
        ratios.append(
            {
                "ratio": label,
                "ours": ours,
                "baseline": theirs,
                "value": r,
                "target": target,
                "meets_target": None if (r is None or target is None) else r >= target,
                "baseline_status": status,
            }
        )

    def of(b: dict, key: str) -> float | None:
        return b.get(key) if b.get("status") == "ok" else None

    ratio(
        f"ours b1 decode / llama.cpp b1 decode ({primary})",
        ours1["decode_tok_s"], of(lc, "decode_tok_s"), lc.get("status"), TARGET_VS_LLAMA_CPP_B1,
    )  # fmt: skip
    ratio(
        "ours 16-concurrent total (end-to-end) / llama.cpp b1 end-to-end",
        ours16["e2e_tok_s"], of(lc, "e2e_tok_s"), lc.get("status"), TARGET_VS_LLAMA_CPP_B16,
    )  # fmt: skip
    ratio(
        "ours 16-concurrent decode (aggregate) / llama.cpp b1 decode",
        ours16["decode_tok_s"], of(lc, "decode_tok_s"), lc.get("status"), None,
    )  # fmt: skip
    theirs_prefill = {r["prompt_tokens"]: r["tok_s_median"] for r in lc.get("prefill", [])} if lc_ok else {}
    for r in res["prefill"]:
        n = r["prompt_tokens"]
        target = TARGET_VS_LLAMA_CPP_PREFILL if n >= 256 else None
        ratio(
            f"ours prefill {n} tokens / llama.cpp prefill {n} (tok/s)",
            r["tok_s_median"], theirs_prefill.get(n), lc.get("status"), target,
        )  # fmt: skip
    ratio(
        "ours b1 end-to-end / llama.cpp b1 end-to-end", ours1["e2e_tok_s"], of(lc, "e2e_tok_s"), lc.get("status"), None
    )
    ratio(
        "ours b1 decode / transformers b1 decode", ours1["decode_tok_s"], of(hf, "decode_tok_s"), hf.get("status"), None
    )
    res["ratios"] = ratios
    console.rule("[bold]summary")
    tb = Table(title="ratios (same run, same machine)", title_justify="left")
    for col in ("comparison", "ours", "baseline", "ratio", "target", "result"):
        tb.add_column(col, justify="left" if col == "comparison" else "right")
    for r in ratios:
        base_txt = fmt(r["baseline"]) if r["baseline"] is not None else r["baseline_status"]
        tb.add_row(
            r["ratio"],
            fmt(r["ours"]),
            base_txt,
            "-" if r["value"] is None else f"{r['value']:.2f}x",
            "-" if r["target"] is None else f">= {r['target']:g}x",
            verdict(r["meets_target"]),
        )
    console.print(tb)

    # perplexity of each format against llama.cpp's on the same file and windows
    lc_ppl = lc.get("perplexity", {}).get("ppl") if lc_ok else None
    tb = Table(title="perplexity against llama.cpp (same file, same windows)", title_justify="left")
    for col in ("format", "ppl", "llama.cpp ppl", "difference", "target", "result"):
        tb.add_column(col, justify="right")
    for f, p in ppl.items():
        d = None if lc_ppl is None else 100 * (p["ppl"] - lc_ppl) / lc_ppl
        p["rel_diff_vs_llama_cpp_pct"] = d
        p["within_llama_cpp_target"] = None if d is None else abs(d) <= PPL_TARGET_PCT
        tb.add_row(
            f, fmt(p["ppl"], 3), fmt(lc_ppl, 3), "-" if d is None else f"{d:+.3f} %", f"within {PPL_TARGET_PCT:g} %",
            verdict(p["within_llama_cpp_target"]),
        )  # fmt: skip
    console.print(tb)

    # the physical bound: a batch-1 token reads every weight once, so it cannot beat bytes / bandwidth
    bw = res["bandwidth"]["gb_s"] * 1e9
    rows = [(f"ours ({res['load']['format']})", res["load"]["weight_bytes_per_token"], ours1["decode_tok_s"])]
    rows.append(("llama.cpp", file_weight_bytes(path), of(lc, "decode_tok_s")))
    res["bound"] = []
    tb = Table(title=f"batch-1 decode against the memory bound ({bw / 1e9:.1f} GB/s read)", title_justify="left")
    for col in ("runtime", "MB read a token", "bound tok/s", "measured tok/s", "of the bound"):
        tb.add_column(col, justify="right")
    for name, nbytes, measured in rows:
        bound = bw / nbytes
        res["bound"].append(
            {"runtime": name, "bytes_per_token": nbytes, "bound_tok_s": bound, "measured_tok_s": measured}
        )
        share = "-" if measured is None else f"{100 * measured / bound:.0f} %"
        tb.add_row(name, fmt(nbytes / 1e6), fmt(bound), fmt(measured), share)
    console.print(tb)


if __name__ == "__main__":
    sys.exit(main())
