"""The optimisation pipeline at a tiny size: files it writes load in our runtime and in llama.cpp's own
reader (gguf-py), pruning keeps what matters, healing and distilling lower the loss, provenance is
written and read back, and bad inputs fail clearly."""

from __future__ import annotations

import json
from dataclasses import replace

import gguf
import pytest
import torch

from emotional_engine.lm.gguf import ModelFileError, load_gguf, read_optimized
from emotional_engine.lm.model import Llama
from emotional_engine.optimize.distil import DistilError, student_from, student_layers
from emotional_engine.optimize.fit import FitSettings, fit, loss_on
from emotional_engine.optimize.gguf_out import FILE_TYPES, weights_of
from emotional_engine.optimize.pipeline import Plan, optimize
from emotional_engine.optimize.prune import PruneError, PruneSpec, kept_width, measure, prune
from emotional_engine.optimize.recipe import Recipe, RecipeError
from tiny_lm import make_model, make_tokenizer_data, tiny_config, write_gguf

TEXT = [
    "The ferry left the harbour late, as it always did, and the gulls followed it out past the wall. " * 3,
    "She read the letter twice by the lamp, then folded it and put it in her coat pocket. " * 3,
    "In the market the old man sold lanterns, and the children watched the light move on the water. " * 3,
]


@pytest.fixture
def parent(tmp_path):
    """A tiny llama GGUF in F32 (rows of 256 so every format applies), and its model."""
    model = make_model(tiny_config(n_embd=256, head_dim=64, n_head=4, n_kv_head=2, intermediate_size=512), std=0.05)
    return write_gguf(tmp_path / "parent.gguf", model, make_tokenizer_data()), model


def ids(n: int = 6, t: int = 33, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 200, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k", "fp16"])
def test_a_quantised_file_loads_in_our_runtime_and_in_llama_cpps_reader(parent, tmp_path, fmt):
    path, model = parent
    out = tmp_path / f"{fmt}.gguf"
    report = optimize(path, out, Plan(quant=fmt, window=32), TEXT)
    want = {"fp16": "F16"}.get(fmt, fmt.upper())
    reader = gguf.GGUFReader(out)  # llama.cpp's own Python reader
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert (
        {types[n] for n in types if not n.endswith("norm.weight")} == {want} == set(report.written.values()) - {"F32"}
    )
    assert reader.fields["tokenizer.ggml.merges"].contents() == make_tokenizer_data().merges  # copied from the parent
    g, sd = load_gguf(out, cache_dir=tmp_path / "cache")
    assert replace(g.config, rms_eps=1e-5) == model.config  # the file keeps the epsilon as float32
    original = weights_of(model)
    worst = max(float((sd[k] - w).norm() / w.norm()) for k, w in original.items())
    # the format's rounding (a row or a head out of place would be over 1)
    assert worst < {"q8_0": 0.01, "fp16": 0.001, "q6_k": 0.03, "q5_k": 0.06}.get(fmt, 0.15), worst
    assert g.optimized["steps"][-1] == {"step": "quantise", "recipe": want}
    assert reader.fields["general.file_type"].contents() == FILE_TYPES[want]


def test_a_recipe_keeps_named_tensors_in_their_own_format_and_k_quants_need_whole_super_blocks(tmp_path):
    model = make_model(tiny_config())  # 64 wide: no row is whole super-blocks of 256
    path = write_gguf(tmp_path / "p.gguf", model, make_tokenizer_data())
    written = optimize(
        path, tmp_path / "o.gguf", Plan(quant="q4_0,token_embd=q8_0,ffn_down=q6_k", window=16), TEXT
    ).written
    assert written["token_embd.weight"] == "Q8_0" and written["blk.0.attn_q.weight"] == "Q4_0"
    assert written["blk.1.ffn_down.weight"] == "Q8_0"  # rows of 128: Q6_K falls back as llama.cpp's does
    kept = Recipe.parse("keep", {"blk.0.attn_q.weight": "Q4_1"})
    assert kept.kind_of("blk.0.attn_q.weight") == "Q4_1" and kept.kind_of("blk.5.attn_q.weight") == "Q4_1"
    with pytest.raises(RecipeError, match="unknown format 'q3_x'; choose one of"):
        Recipe.parse("q3_x", {})
    with pytest.raises(RecipeError, match="KIND=FORMAT"):
        Recipe.parse("q4_0,attention=q8_0", {})


def _same_logits(a: Llama, b: Llama) -> bool:
    x = ids(2)
    with torch.no_grad():
        return torch.allclose(a(x)[0], b(x)[0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_pruning_removes_what_adds_nothing_first():
    """Channels, head groups and a layer planted to add nothing are the ones pruned: the logits stay."""
    model = make_model(tiny_config(n_layer=3, intermediate_size=128), std=0.1)
    cfg = model.config
    group = cfg.n_head // cfg.n_kv_head
    for i, block in enumerate(model.layers):
        dead = torch.arange(64) * 2 + (i % 2)  # every other channel, a different half per layer
        block.mlp.down.weight[:, dead] = 0
        dead_heads = slice(group * cfg.head_dim, 2 * group * cfg.head_dim)  # key/value group 1's query heads
        block.attn.proj.weight[:, dead_heads] = 0
    model.layers[1].attn.proj.weight.zero_()
    model.layers[1].mlp.down.weight.zero_()  # layer 1 leaves the stream as it found it
    imp = measure(model, ids(4))
    assert int(imp.layers.argmin()) == 1
    new_cfg, sd = prune(model, PruneSpec.parse("ffn=0.5,heads=0.5,layers=0.34"), imp)
    assert (new_cfg.n_layer, new_cfg.intermediate_size, new_cfg.n_kv_head, new_cfg.n_head) == (2, 64, 1, group)
    assert sd["layers.0.mlp.gate_up.weight"].shape == (128, cfg.n_embd)
    assert sd["layers.0.attn.qkv.weight"].shape == ((group + 2) * cfg.head_dim, cfg.n_embd)
    assert _same_logits(model, Llama.from_state_dict(new_cfg, sd))
    random_imp = measure(make_model(cfg, seed=5), ids(4))  # the wrong importance prunes what mattered
    assert not _same_logits(model, Llama.from_state_dict(*prune(model, PruneSpec(ffn=0.5), random_imp)))


def test_sparsity_outside_its_range_or_of_an_unknown_kind_is_refused():
    refused = [("0", r"outside \(0, 0.9\]"), ("0.95", "outside"), ("ffn=-0.1", "outside"),
               ("neurons=0.2", "prune one of ffn, heads, layers"), ("ffn=lots", "must be a number")]  # fmt: skip
    for bad, message in refused:
        with pytest.raises(PruneError, match=message):
            PruneSpec.parse(bad)
    assert PruneSpec.parse("0.25") == PruneSpec(ffn=0.25)
    assert kept_width(1536, 0.25) == 1152 and kept_width(1536, 0.5) == 768 and kept_width(1024, 0.25) == 768
    assert kept_width(1536, 1 / 3) == 1024  # a whole number of super-blocks where that is within a block


def test_healing_and_distilling_lower_the_loss():
    torch.manual_seed(0)
    corpus = torch.arange(40).repeat(8)[None].repeat(6, 1)[:, :41] % 37  # a repeating toy corpus
    teacher = make_model(tiny_config(n_layer=2), std=0.1)
    fit(teacher, corpus, FitSettings(steps=40, lr=3e-3))  # a teacher that knows the corpus
    student = student_from(teacher, student_layers(2, 1))
    assert student.config.n_layer == 1
    assert torch.equal(weights_of(student)["layers.0.attn.qkv.weight"], weights_of(teacher)["layers.1.attn.qkv.weight"])
    turns_most = student_layers(2, 1, torch.tensor([0.9, 0.1]))  # the layer that turns the stream most
    assert turns_most == [0]
    by_influence = student_from(teacher, turns_most)
    assert torch.equal(
        weights_of(by_influence)["layers.0.mlp.down.weight"], weights_of(teacher)["layers.0.mlp.down.weight"]
    )
    s = FitSettings(steps=30, lr=3e-3)
    before = loss_on(student, corpus, teacher, s)
    losses = fit(student, corpus, s, teacher)
    assert loss_on(student, corpus, teacher, s) < 0.7 * before and losses[-1] < losses[0]
    with pytest.raises(DistilError, match="1 to 1 layers"):
        student_layers(2, 2)


def test_the_pipeline_records_its_steps_and_the_output_serves(parent, tmp_path):
    path, model = parent
    out = tmp_path / "small.gguf"
    lines = []
    plan = Plan(prune=PruneSpec(ffn=0.5), heal=FitSettings(steps=2), distil_layers=1,
                distil=FitSettings(steps=2), quant="q8_0", window=32)  # fmt: skip
    report = optimize(path, out, plan, TEXT, lines.append)
    made = read_optimized(out)
    assert [s["step"] for s in made["steps"]] == ["prune", "heal", "distil", "quantise"]
    assert made["parent"]["sha256"] == load_gguf(path, cache_dir=tmp_path / "c")[0].sha256
    assert len(made["calibration"]["sha256"]) == 64 and made["steps"][0]["ffn"] == 0.5
    assert report.out_bytes < report.parent_bytes / 3 and any("heal: held-out loss" in line for line in lines)
    g, sd = load_gguf(out, cache_dir=tmp_path / "c")
    assert (g.config.n_layer, g.config.intermediate_size) == (1, 256) and g.optimized == made
    assert json.loads(gguf.GGUFReader(out).fields["emotional_engine.optimize"].contents()) == made


async def test_an_optimised_file_is_a_model_like_any_other(parent, tmp_path):
    from emotional_engine.lm.builtin import BuiltinGenerator
    from emotional_engine.lm.sampling import SamplingParams

    path, _ = parent
    out = tmp_path / "q.gguf"
    optimize(path, out, Plan(prune=PruneSpec(heads=0.5), quant="q4_k", window=32), TEXT)
    gen = BuiltinGenerator.load(out, cache_dir=tmp_path / "c", emotion_adapter=False)
    try:
        done = await gen.complete([{"role": "user", "content": "the harbour"}], SamplingParams(max_tokens=5, seed=1))
        assert done.completion_tokens == 5 and gen.info.optimized["steps"][0]["heads"] == 0.5
    finally:
        await gen.aclose()
    fields = gguf.GGUFReader(out).fields  # llama.cpp takes a head as embedding / heads wide unless told
    assert fields["llama.attention.key_length"].contents() == fields["llama.attention.value_length"].contents() == 64
    assert fields["llama.attention.head_count"].contents() == 2 and fields["llama.embedding_length"].contents() == 256


def test_a_file_that_is_not_a_llama_gguf_is_refused_before_any_work(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        optimize(text, tmp_path / "o.gguf", Plan(quant="q8_0"), TEXT)
    other = write_gguf(tmp_path / "gpt.gguf", make_model(), make_tokenizer_data(), arch="gpt2")
    with pytest.raises(ModelFileError, match="architecture 'gpt2' is not supported"):
        optimize(other, tmp_path / "o.gguf", Plan(quant="q8_0"), TEXT)
    assert not (tmp_path / "o.gguf").exists()


def test_the_heal_never_trains_on_the_windows_its_loss_is_reported_on(parent, tmp_path, monkeypatch):
    import emotional_engine.optimize.pipeline as pipeline
    from emotional_engine.lm.tokenizer import BPETokenizer
    from emotional_engine.optimize.calibration import windows

    seen, real_fit = [], pipeline.fit
    monkeypatch.setattr(pipeline, "fit", lambda net, data, *a: seen.append(data) or real_fit(net, data, *a))
    path, _ = parent
    optimize(path, tmp_path / "o.gguf", Plan(prune=PruneSpec(ffn=0.5), heal=FitSettings(steps=1), window=8), TEXT)
    every = windows(BPETokenizer(make_tokenizer_data()), TEXT, 8)
    held = max(1, len(every) // 10)
    assert len(every) > held and torch.equal(seen[0], every[:-held])  # the last tenth is held out


def test_a_model_with_fewer_layers_than_the_shipped_adapter_loads_without_it(tmp_path):
    """The shipped emotion adapter belongs to the embedded model: another model, even one with fewer
    layers than the adapter's, loads without it instead of failing."""
    from emotional_engine.lm.builtin import BuiltinGenerator

    path = write_gguf(tmp_path / "p.gguf", make_model(tiny_config(n_layer=1)), make_tokenizer_data())
    gen = BuiltinGenerator.load(path, cache_dir=tmp_path / "c")  # emotion_adapter=True: the shipped one
    assert gen.info.adapter is None and gen.emotion_contexts == {}


def test_the_distillation_recipe_runs_end_to_end_on_brown_fiction_and_stories_the_teacher_writes(parent, tmp_path):
    """At a tiny size: Brown fiction (a planted corpus folder in its tagged format) and stories written
    through the engine's agents and prompts (a fake model stands in for the teacher there) make the text
    a student is distilled on; its hash goes into the file."""
    from emotional_engine.engine import Engine
    from emotional_engine.optimize.calibration import brown_fiction, digest, teacher_stories
    from fakes import FakeEmotion, harbour_generator

    brown = tmp_path / "brown"
    brown.mkdir()
    tagged = "The/at ferry/nn left/vbd late/rb ./.\nShe/pps read/vbd the/at letter/nn twice/rb ./.\n"
    (brown / "ck01").write_text(tagged * 20)
    (brown / "ca01").write_text("News/nn of/in the/at day/nn ./.\n")  # not fiction: left out
    fiction = brown_fiction(100, brown)
    assert fiction[0].startswith("The ferry left late. She read the letter twice.") and "News" not in " ".join(fiction)
    assert sum(len(p.split()) for p in fiction) >= 100
    engine = Engine(generator=harbour_generator(), emotion=FakeEmotion(), candidates=2, check_safety=False)
    done = []
    stories = teacher_stories(engine, 2, words=80, progress=lambda d, t: done.append((d, t)))
    assert len(stories) == 2 and all("harbour" in s for s in stories) and done == [(1, 2), (2, 2)]
    path, _ = parent
    out = tmp_path / "student.gguf"
    plan = Plan(distil_layers=1, distil=FitSettings(steps=3, lr=1e-3), window=16)
    report = optimize(path, out, plan, fiction + stories)
    distil = report.steps[0]
    assert distil["step"] == "distil" and distil["student_layers"] == 1 and distil["teacher_layers"] == 2
    assert distil["chosen_by"] == "block influence" and len(distil["kept_teacher_layers"]) == 1
    assert read_optimized(out)["calibration"]["sha256"] == digest(fiction + stories)


@pytest.mark.llama_cpp
def test_llama_cpp_runs_a_pruned_quantised_file_as_our_runtime_does(parent, tmp_path):
    """llama.cpp itself (`make test-llama-cpp`) loads a file whose heads and channels were pruned and
    predicts the next token as our runtime does."""
    import llama_cpp
    import numpy as np

    from emotional_engine.lm.tokenizer import BPETokenizer

    _, model = parent
    tok = replace(make_tokenizer_data(), pre="gpt-2")  # llama.cpp's name for GPT-2's split
    path = write_gguf(tmp_path / "parent.gguf", model, tok)
    out = tmp_path / "pruned.gguf"
    optimize(path, out, Plan(prune=PruneSpec(heads=0.5, ffn=0.5), quant="q8_0", window=32), TEXT)
    ids = BPETokenizer(tok).encode("the ferry left the harbour late and the gulls")
    g, sd = load_gguf(out, cache_dir=tmp_path / "c")
    with torch.no_grad():
        ours = Llama.from_state_dict(g.config, sd)(torch.tensor([ids]))[0][0, -1].numpy()
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=1, verbose=False, logits_all=True)
    llm.eval(ids)
    theirs = np.asarray(llm.scores[llm.n_tokens - 1])
    cosine = float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs))
    assert cosine > 0.99 and set(np.argsort(ours)[-5:]) & set(np.argsort(theirs)[-5:]), cosine


def test_a_write_that_fails_leaves_no_file_behind(parent, tmp_path, monkeypatch):
    import emotional_engine.optimize.gguf_out as gguf_out

    def broken(w, kind):
        raise OSError("disk full")

    monkeypatch.setattr(gguf_out, "quantise", broken)
    path, _ = parent
    with pytest.raises(OSError, match="disk full"):
        optimize(path, tmp_path / "o.gguf", Plan(quant="q8_0", window=32), TEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parent.gguf"]
