#!/usr/bin/env python
"""The design's "Model Optimization Results" table, measured: the embedded model as shipped, each block
format, pruned 25% and 50%, distilled, and a combination, each written by `emotional-engine optimize`
(optimize/pipeline.py) and measured on this machine in one run.

    .venv/bin/python benchmarks/optimisation.py --work /tmp/opt            # build every row, then measure
    .venv/bin/python benchmarks/optimisation.py --work /tmp/opt --quick    # tiny training, 1 story a row

Per row, in a process of its own (so its peak memory is its own): file size; decode ms a token at
batch 1 and per token at batch 16 (greedy, the runtime's native format, lm_speed.py's timing); peak
resident memory of that process after loading and decoding (the weight cache built beforehand, as after
a file's first load); held-out perplexity on
benchmarks/data/heldout.txt (lm_speed.py's windows); then story quality on the story-quality benchmark's
held-out requests (the first --stories of them, --words each, two candidates): arc correlation (the
emotion model's and VADER's reading against the target), emotion match, premise recall, and the
engine's own quality score. Then llama.cpp's batch-1 decode and perplexity on the same file, in its own
process, where llama-cpp-python is installed. Ratios are against the shipped file's row of the same run.
Last, step 4 (compile): the shipped file's batch-1 decode with the runtime's fused ops, in plain
PyTorch, and under torch.compile.

Calibration, healing and distilling use Brown fiction (fetched once with npm) and, with
--teacher-stories, stories the shipped model writes through the engine; never the held-out requests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@dataclass
class Row:
    name: str
    quant: str | None = None
    prune: str | None = None
    heal_steps: int = 0
    distil_layers: int | None = None
    distil_steps: int = 0
    result: dict = field(default_factory=dict)


def rows(args) -> list[Row]:
    heal, distil = args.heal_steps, args.distil_steps
    return [
        Row("shipped (Q4_1)"),
        Row("Q8_0", quant="q8_0"),
        Row("Q4_0", quant="q4_0"),
        Row("Q4_K (576-wide rows: Q8_0)", quant="q4_k"),
        Row("Q6_K (576-wide rows: Q8_0)", quant="q6_k"),
        Row("fp16", quant="fp16"),
        Row("pruned 25% (ffn) + heal", prune="ffn=0.25", heal_steps=heal),
        Row("pruned 50% (ffn) + heal", prune="ffn=0.5", heal_steps=heal),
        Row(f"distilled ({args.student_layers} of 30 layers)", distil_layers=args.student_layers, distil_steps=distil),
        Row(
            f"combined: ffn 25% + {args.student_layers} layers + Q4_0",
            prune="ffn=0.25",
            heal_steps=heal,
            distil_layers=args.student_layers,
            distil_steps=distil,
            quant="q4_0,token_embd=q4_0",
        ),  # fmt: skip
    ]


def build(row: Row, parent: Path, work: Path, texts: list[str], args) -> Path:
    from emotional_engine.optimize.fit import FitSettings
    from emotional_engine.optimize.pipeline import Plan, optimize
    from emotional_engine.optimize.prune import PruneSpec

    if row.quant is None and row.prune is None and row.distil_layers is None:
        return parent
    out = work / (row.name.split(" (")[0].replace(" ", "_").replace("%", "").replace(":", "") + ".gguf")
    if out.exists() and args.reuse:
        return out
    fit = dict(lr=args.lr, batch=args.batch)
    plan = Plan(prune=PruneSpec.parse(row.prune) if row.prune else None,
                heal=FitSettings(steps=row.heal_steps, **fit), distil_layers=row.distil_layers,
                distil=FitSettings(steps=row.distil_steps, **fit), quant=row.quant, window=args.window)  # fmt: skip
    t0 = time.perf_counter()
    report = optimize(parent, out, plan, texts, lambda line: print(f"    {line}", flush=True))
    row.result["build_s"] = time.perf_counter() - t0
    row.result["steps"] = report.steps
    return out


# ---- measuring one file (a subprocess) ---------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's resident high-water mark since it started (VmHWM). Not getrusage's ru_maxrss: on
    Linux a child inherits its parent's peak through fork and exec, so a child of a process that trained a
    model would report that model's memory."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def memory_only(path: Path, args) -> dict:
    """The peak memory of a process that loads the file and decodes at batch 1 and 16, as `measure` does."""
    import asyncio

    import torch

    from emotional_engine.lm.builtin import BuiltinGenerator
    from lm_speed import Prompts, bench_decode

    torch.set_num_threads(args.threads)
    gen = BuiltinGenerator.load(path, emotion_adapter=False)
    prompts = Prompts(gen.batcher, 64 + 11 * 16 + 64)
    for batch in (1, 16):
        bench_decode(gen.batcher, prompts, batch, args.tokens, 1, 60)
    peak = peak_rss_bytes()
    asyncio.run(gen.aclose())
    return {"peak_rss_mb": peak / 2**20}


def measure(path: Path, args) -> dict:
    """Speed, memory, perplexity and story quality of one file, in this process."""
    import asyncio

    import torch

    from emotional_engine.lm.builtin import BuiltinGenerator
    from lm_speed import HELDOUT, Prompts, bench_decode, perplexity

    torch.set_num_threads(args.threads)
    gen = BuiltinGenerator.load(path, emotion_adapter=False)
    engine = gen.batcher
    prompts = Prompts(engine, 64 + 11 * 16 + 64)
    one = bench_decode(engine, prompts, 1, args.tokens, args.reps, 60)
    sixteen = bench_decode(engine, prompts, 16, args.tokens, max(1, args.reps // 2), 120)
    ids = engine.tok.encode(HELDOUT.read_text(encoding="utf-8"))
    ppl = perplexity(engine.model, ids, 512, 4)
    peak = peak_rss_bytes()
    asyncio.run(gen.aclose())
    out = {
        "file_mb": path.stat().st_size / 1e6,
        "decode_ms_b1": 1000 / one["decode_tok_s"],
        "per_token_ms_b16": 1000 / sixteen["decode_tok_s"],
        "peak_rss_mb": peak / 2**20,
        "ppl": ppl["ppl"],
        "ppl_tokens": ppl["tokens"],
    }
    if args.stories:
        out |= asyncio.run(story_quality(path, args))
    return out


async def story_quality(path: Path, args) -> dict:
    import numpy as np
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from emotional_engine.agents.story import plan_story
    from emotional_engine.config import Settings
    from emotional_engine.culture import load_profile
    from emotional_engine.domain import StoryRequest
    from emotional_engine.engine import Engine
    from story_quality import HELD_OUT, arc_measures, engine_story, quality_fields, text_measures

    engine = Engine(Settings(model_path=path), candidates=2)
    await engine.load()
    vader, per = SentimentIntensityAnalyzer(), []
    for item in HELD_OUT[: args.stories]:
        req = StoryRequest(premise=item.premise, arc=item.arc, culture=item.culture, words=args.words, seed=item.seed)
        emotions = [s.target.emotion for s in plan_story(req, load_profile(item.culture).story.structure).scenes]
        story, _ = await engine_story(engine, req)
        m = text_measures(story.text, req, engine.generator) | arc_measures(
            story.text, req, emotions, engine.emotion, vader
        )
        m["quality"] = quality_fields(story).get("overall")
        m["text"] = story.text
        per.append(m)
    mean = lambda k: float(np.mean([m[k] for m in per if m[k] is not None]))  # noqa: E731
    return {
        "arc_r_model": mean("arc_r_model"),
        "arc_r_vader": mean("arc_r_vader"),
        "emotion_match": mean("emotion_match"),
        "premise_recall": mean("premise_recall"),
        "quality": mean("quality"),
        "story_texts": [m["text"] for m in per],
    }


def compile_choices(path: Path, args) -> dict:
    """Step 4, compile: batch-1 decode ms a token of one file with the serving pass as the runtime runs it
    (the kernels' fused ops), in plain PyTorch, and in PyTorch under torch.compile (inductor, dynamic
    shapes; warmed up first so compilation is not timed). The runtime keeps whichever wins."""
    import asyncio

    import torch

    from emotional_engine.lm.builtin import BuiltinGenerator
    from lm_speed import Prompts, bench_decode

    torch.set_num_threads(args.threads)
    gen = BuiltinGenerator.load(path, emotion_adapter=False)
    engine, model = gen.batcher, gen.batcher.model
    prompts = Prompts(engine, 64 + 64)
    out, ops = {}, model.fused

    def timed(label: str) -> None:
        bench_decode(engine, prompts, 1, 8, 1, 60)  # warm-up (and compilation)
        out[label] = 1000 / bench_decode(engine, prompts, 1, args.tokens, args.reps, 60)["decode_tok_s"]

    timed("fused ops (the runtime's pass)")
    model.use_kernels(None)
    timed("PyTorch")
    t0 = time.perf_counter()
    try:
        model.forward_packed = torch.compile(model.forward_packed, dynamic=True)
        timed("PyTorch + torch.compile")
        out["torch.compile warm-up s"] = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - reported as the row's result
        out["PyTorch + torch.compile"] = f"failed: {type(e).__name__}: {str(e)[:120]}"
    model.use_kernels(ops)
    asyncio.run(gen.aclose())
    return out


def llama_cpp(path: Path, args) -> dict:
    from emotional_engine.lm.gguf import read_metadata
    from emotional_engine.lm.tokenizer import BPETokenizer
    from lm_speed import HELDOUT, PARAGRAPH, bench_llama_cpp, ppl_windows

    tok = BPETokenizer(read_metadata(path)[1])
    prompt = tok.encode(PARAGRAPH)[:64]
    chunks = ppl_windows(tok.encode(HELDOUT.read_text(encoding="utf-8")), 512, 4)
    r = bench_llama_cpp(path, prompt, args.tokens, args.reps, 60, tok.eos_ids, args.threads, {64: prompt}, chunks)
    if r.get("status") != "ok":
        return {"status": r.get("status")}
    return {"status": "ok", "decode_ms_b1": 1000 / r["decode_tok_s"], "ppl": r["perplexity"].get("ppl")}


def in_subprocess(what: str, path: Path, args) -> dict:
    settings = {"threads": args.threads, "tokens": args.tokens, "reps": args.reps, "stories": args.stories,
                "words": args.words}  # fmt: skip
    cmd = [
        sys.executable,
        __file__,
        f"--{what}",
        str(path),
        *(x for k, v in settings.items() for x in (f"--{k}", str(v))),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"status": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the run -----------------------------------------------------------------------------------


def calibration_texts(args, parent: Path) -> list[str]:
    from emotional_engine.optimize import calibration

    texts = calibration.brown_fiction(args.calibration_words)
    if args.teacher_stories:
        engine = calibration.teacher_engine(parent)
        texts += calibration.teacher_stories(engine, args.teacher_stories, words=args.words)
    return texts


def pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+.1f}%"


HEADER = ["row", "file MB", "decode ms/token b=1", "vs shipped", "per-token ms b=16", "peak RSS MB", "held-out ppl",
          "vs shipped", "arc r (model / VADER)", "emotion match", "premise recall", "engine quality",
          "llama.cpp ms/token b=1", "llama.cpp ppl"]  # fmt: skip


def print_table(table: list[Row]) -> None:
    base = table[0].result
    print("\n| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in table:
        r, lc = row.result, row.result.get("llama_cpp", {})
        if "decode_ms_b1" not in r:
            print(f"| {row.name} | {r.get('status', 'not measured')} |")
            continue
        cells = [row.name, f"{r['file_mb']:.1f}", f"{r['decode_ms_b1']:.2f}",
                 f"{base['decode_ms_b1'] / r['decode_ms_b1']:.2f}x", f"{r['per_token_ms_b16']:.2f}",
                 f"{r['peak_rss_mb']:.0f}", f"{r['ppl']:.3f}", pct(r["ppl"], base["ppl"])]  # fmt: skip
        if "arc_r_model" in r:
            cells += [f"{r['arc_r_model']:+.2f} / {r['arc_r_vader']:+.2f}", f"{r['emotion_match']:.2f}",
                      f"{r['premise_recall']:.2f}", f"{r['quality']:.2f}"]  # fmt: skip
        else:
            cells += ["n/a"] * 4
        ok = lc.get("status") == "ok"
        cells += [f"{lc['decode_ms_b1']:.2f}", f"{lc['ppl']:.3f}"] if ok else [lc.get("status", "n/a"), "n/a"]
        print("| " + " | ".join(cells) + " |")


def main(args) -> int:
    for flag, run in (("measure", measure), ("llama_cpp", llama_cpp), ("compile", compile_choices),
                      ("memory", memory_only)):  # fmt: skip
        if getattr(args, flag):
            print(json.dumps(run(Path(getattr(args, flag)), args)))
            return 0
    from emotional_engine.lm.gguf import embedded_model_path, load_gguf

    parent = embedded_model_path()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.only_memory:
        for row in rows(args):
            path = build(row, parent, work, [], argparse.Namespace(**{**vars(args), "reuse": True}))
            print(f"| {row.name} | {in_subprocess('memory', path, args).get('peak_rss_mb', 0):.0f} |", flush=True)
        return 0
    texts = calibration_texts(args, parent)
    print(f"calibration: {len(texts)} texts, {sum(len(t.split()) for t in texts):,} words", flush=True)
    table = rows(args)
    for row in table:
        print(f"== {row.name}", flush=True)
        path = build(row, parent, work, texts, args)
        load_gguf(path)  # the weight cache is built here, so the row's process measures serving, not that
        row.result |= in_subprocess("measure", path, args)
        row.result["llama_cpp"] = in_subprocess("llama-cpp", path, args)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.result.items()
                 if k not in ("steps", "story_texts")}  # fmt: skip
        print(f"   {shown}", flush=True)
    print_table(table)
    choices = in_subprocess("compile", parent, args)
    print("\ncompile (step 4), batch-1 decode of the shipped file, ms a token:")
    for label, value in choices.items():
        print(f"  {label}: {value:.2f}" if isinstance(value, float) else f"  {label}: {value}")
    if args.json:
        result = {"args": vars(args), "rows": [r.__dict__ for r in table], "compile": choices}
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/ee-optimisation", help="where the optimised files are written")
    ap.add_argument("--reuse", action="store_true", help="measure files already in --work instead of building them")
    ap.add_argument("--quick", action="store_true", help="tiny training, one story a row")
    ap.add_argument("--heal-steps", type=int, default=150)
    ap.add_argument("--distil-steps", type=int, default=300)
    ap.add_argument("--student-layers", type=int, default=20)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--calibration-words", type=int, default=60_000)
    ap.add_argument("--teacher-stories", type=int, default=0)
    ap.add_argument("--stories", type=int, default=3, help="held-out story-quality requests a row (0: none)")
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=64, help="tokens each decode measurement writes")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--llama-cpp", help=argparse.SUPPRESS)
    ap.add_argument("--compile", help=argparse.SUPPRESS)
    ap.add_argument("--memory", help=argparse.SUPPRESS)
    ap.add_argument("--only-memory", action="store_true", help="peak memory of each file in --work, nothing else")
    args = ap.parse_args(argv)
    if args.quick:
        args.heal_steps, args.distil_steps, args.stories, args.calibration_words = 2, 2, 1, 5_000
    return args


if __name__ == "__main__":
    sys.exit(main(parse_args()))
