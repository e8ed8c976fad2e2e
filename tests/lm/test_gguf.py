"""GGUF loading: tiny files written with gguf's GGUFWriter, round-tripped into the model."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path

import gguf as gguf_pkg
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from emotional_engine.lm import gguf as gg
from emotional_engine.lm.gguf import ModelFileError, load_gguf, read_metadata
from emotional_engine.lm.model import Llama
from tiny_lm import VOCAB_SIZE, gguf_tensors, make_model, make_tokenizer_data, qtype_for, tiny_config

pytestmark = pytest.mark.usefixtures("torch_threads")


def build(cfg, sd) -> Llama:
    m = Llama(cfg)
    m.load_weights(sd)
    return m.eval()


def ids(n=20, seed=0, vocab=200):
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_f32_file_loads_exactly(gguf_writer, cache_dir, tok_data, tied):
    src = make_model(tiny_config(tie_embeddings=tied), seed=1)
    path = gguf_writer(src)
    info, sd = load_gguf(path, cache_dir=cache_dir)
    cfg = info.config
    for f in dataclasses.fields(cfg):
        assert getattr(cfg, f.name) == pytest.approx(getattr(src.config, f.name)), f.name
    assert info.name == "tiny-test" and info.path == path and len(info.sha256) == 64
    assert info.tokenizer.tokens == tok_data.tokens
    assert info.tokenizer.merges == tok_data.merges
    assert info.tokenizer.token_types == tok_data.token_types
    assert info.tokenizer.eos_id == tok_data.eos_id and info.tokenizer.model == "gpt2" and info.tokenizer.pre == "gpt2"
    # every tensor, including the un-permuted Q and K rows, is bit-exact
    ref = src.state_dict()
    for k, v in sd.items():
        assert v.dtype == torch.float32
        assert torch.equal(v, ref[k]), k
    loaded = build(cfg, sd)
    x = ids()
    assert torch.equal(loaded(x)[0], src(x)[0])


def test_tokenizer_metadata_round_trip(gguf_writer, cache_dir, tok_data, tokenizer):
    from emotional_engine.lm.tokenizer import BPETokenizer

    data = dataclasses.replace(
        tok_data, chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}", add_bos=False
    )
    path = gguf_writer(make_model(seed=1), tok=data)
    _, tok, name = read_metadata(path)
    assert name == "tiny-test"
    assert tok.chat_template == data.chat_template and tok.bos_id is None and tok.add_bos is False
    assert tok.extra_eos_ids == []
    rebuilt = BPETokenizer(tok)
    text = "<|im_start|>user\nnaïve 😀 the end<|im_end|>"
    assert rebuilt.encode(text) == tokenizer.encode(text)
    assert rebuilt.apply_chat_template([{"role": "user", "content": "x"}]) == "x"


@torch.inference_mode()
def test_permutation_is_needed(gguf_writer, cache_dir):
    """Guard for the test helper itself: writing Q/K without llama.cpp's permutation must not load
    back to the same model (otherwise the un-permute would go untested)."""
    src = make_model(seed=2)
    good = load_gguf(gguf_writer(src, "good.gguf"), cache_dir=cache_dir)[1]
    assert torch.equal(good["layers.0.attn.qkv.weight"], src.layers[0].attn.qkv.weight)
    t = gguf_tensors(src)
    q = t["blk.0.attn_q.weight"]
    assert not np.array_equal(gg._reverse_permute(q, src.config.n_head), q)


def quant_roundtrip(w: torch.Tensor, qname: str) -> torch.Tensor:
    """What llama.cpp's quantiser followed by its dequantiser makes of a (rows, cols) weight."""
    qt = gguf_pkg.GGMLQuantizationType[qname]
    a = w.detach().numpy().astype(np.float32)
    return torch.from_numpy(
        np.array(gguf_pkg.quants.dequantize(gguf_pkg.quants.quantize(a, qt), qt), dtype=np.float32).reshape(a.shape)
    )


QKV = ("attn_q", "attn_k", "attn_v")


def expected_state_dict(src: Llama, qtypes: dict[str, str]) -> dict[str, torch.Tensor]:
    """The source weights after the file's quantisation, in our fused layout. Quantisation works
    on blocks along a row, so it commutes with llama.cpp's Q/K row permutation."""
    cfg = src.config

    def q(w, gguf_name):
        qname = qtype_for(gguf_name, qtypes)
        return w.detach().clone() if qname == "F32" else quant_roundtrip(w, qname)

    sd = {k: v.detach().clone() for k, v in src.state_dict().items()}
    sd["tok_embeddings.weight"] = q(sd["tok_embeddings.weight"], "token_embd")
    q_dim, kv_dim = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    for i in range(cfg.n_layer):
        o = f"layers.{i}."
        parts = sd[o + "attn.qkv.weight"].split([q_dim, kv_dim, kv_dim])
        sd[o + "attn.qkv.weight"] = torch.cat([q(w, n) for w, n in zip(parts, QKV)])
        sd[o + "attn.proj.weight"] = q(sd[o + "attn.proj.weight"], "attn_output")
        g, u = sd[o + "mlp.gate_up.weight"].split(cfg.intermediate_size)
        sd[o + "mlp.gate_up.weight"] = torch.cat([q(g, "ffn_gate"), q(u, "ffn_up")])
        sd[o + "mlp.down.weight"] = q(sd[o + "mlp.down.weight"], "ffn_down")
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = q(sd["lm_head.weight"], "output")
    else:
        sd.pop("lm_head.weight", None)
    return sd


@torch.inference_mode()
@pytest.mark.parametrize(
    "qtypes, min_cos",
    [
        ({"attn_": "F16", "ffn_": "F16", "token_embd": "F16", "output": "F16"}, 0.9999),
        ({"attn_": "Q8_0", "ffn_": "Q8_0", "token_embd": "Q8_0", "output": "Q8_0"}, 0.99),
        (
            {
                "attn_q": "Q4_0",
                "attn_k": "Q4_1",
                "attn_v": "Q5_0",
                "attn_output": "Q5_1",
                "ffn_": "Q8_0",
                "token_embd": "Q8_0",
                "output": "Q4_0",
            },
            0.5,
        ),
    ],
    ids=["f16", "q8_0", "mixed-q4-q5"],
)
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_quantised_file_loads_within_tolerance(gguf_writer, cache_dir, qtypes, min_cos, tied):
    src = make_model(tiny_config(tie_embeddings=tied), seed=3)
    path = gguf_writer(src, qtypes=qtypes)
    types = {t.name: t.tensor_type.name for t in gguf_pkg.GGUFReader(path).tensors}
    for name, ty in types.items():
        assert ty == ("F32" if name.endswith("norm.weight") else qtype_for(name, qtypes)), name
    info, sd = load_gguf(path, cache_dir=cache_dir)
    # exactly what the file's quantisation leaves of each weight, rows in the right places
    expected = expected_state_dict(src, qtypes)
    assert sd.keys() == expected.keys()
    for k in sd:
        assert torch.equal(sd[k], expected[k]), k
    loaded = build(info.config, sd)
    x = ids(seed=1)
    a, b = loaded(x)[0][0], src(x)[0][0]
    assert torch.equal(a, build(info.config, expected)(x)[0][0])
    # and close to the unquantised model (loosely: a random 2-layer net amplifies weight noise)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert cos.min().item() > min_cos, cos.min().item()


@torch.inference_mode()
def test_second_load_comes_from_the_cache(gguf_writer, cache_dir, monkeypatch):
    src = make_model(seed=4)
    path = gguf_writer(src, qtypes={"ffn_": "Q8_0"})
    assert not cache_dir.exists() or not list(cache_dir.iterdir())
    info1, sd1 = load_gguf(path)  # EE_CACHE_DIR points at cache_dir
    files = list(cache_dir.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith(info1.sha256[:32])
    assert not list(cache_dir.glob("*.tmp*"))

    def no_dequant(*a, **k):
        raise AssertionError("the cached state dict should have been used")

    monkeypatch.setattr(gg, "dequantize_state_dict", no_dequant)
    info2, sd2 = load_gguf(path, cache_dir=cache_dir)
    assert info2.sha256 == info1.sha256 and info2.config == info1.config
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]), k
    x = ids(seed=2)
    assert torch.equal(build(info2.config, sd2)(x)[0], build(info1.config, sd1)(x)[0])


def test_corrupt_cache_is_rebuilt(gguf_writer, cache_dir, caplog):
    src = make_model(seed=5)
    path = gguf_writer(src)
    _, sd1 = load_gguf(path, cache_dir=cache_dir)
    (cached,) = cache_dir.glob("*.pt")
    cached.write_bytes(b"garbage")
    _, sd2 = load_gguf(path, cache_dir=cache_dir)
    assert any("unreadable weight cache" in r.getMessage() for r in caplog.records)
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert cached.stat().st_size > 1000  # rewritten


def test_changed_file_is_not_served_from_a_stale_cache(gguf_writer, cache_dir):
    a, b = make_model(seed=6), make_model(seed=7)
    path = gguf_writer(a, "m.gguf")
    _, sd_a = load_gguf(path, cache_dir=cache_dir)
    gguf_writer(b, "m.gguf")  # same path, new content
    _, sd_b = load_gguf(path, cache_dir=cache_dir)
    assert torch.equal(sd_b["tok_embeddings.weight"], b.tok_embeddings.weight)
    assert len(list(cache_dir.glob("*.pt"))) == 2


def test_unwritable_cache_dir_still_loads(gguf_writer, tmp_path, caplog):
    src = make_model(seed=8)
    path = gguf_writer(src)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    _, sd = load_gguf(path, cache_dir=blocker / "cache")
    assert torch.equal(sd["norm.weight"], src.norm.weight)
    assert any("could not write weight cache" in r.getMessage() for r in caplog.records)


def test_special_tokens_are_what_llama_cpp_parses_as_one(gguf_writer, tok_data):
    """Unknown, control and user-defined tokens (llama.cpp's special-token cache); not normal, byte
    or unused ones."""
    types = [2, 4, 6, 5, *tok_data.token_types[4:]]  # unknown, user-defined, byte, unused, then as they were
    path = gguf_writer(make_model(seed=16), tok=dataclasses.replace(tok_data, token_types=types))
    assert gg.special_tokens(path) == [*tok_data.tokens[:2], "<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# ---- bad files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path, cache_dir):
    path = tmp_path / "nope" / "missing.gguf"
    with pytest.raises(ModelFileError) as ei:
        load_gguf(path)
    assert str(path) in str(ei.value) and "not found" in str(ei.value)
    assert ei.value.path == str(path)


def test_directory_is_not_a_file(tmp_path, cache_dir):
    with pytest.raises(ModelFileError, match="not a file"):
        load_gguf(tmp_path)


def test_random_bytes(tmp_path, cache_dir):
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError, match="not a GGUF") as ei:
        load_gguf(path)
    assert str(path) in str(ei.value)


def test_empty_file(tmp_path, cache_dir):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        load_gguf(path)


@pytest.mark.parametrize("fraction", [0.002, 0.05, 0.5, 0.9, 0.999])
def test_truncated_file(gguf_writer, tmp_path, cache_dir, fraction):
    src = make_model(seed=9)
    full = gguf_writer(src, "full.gguf", qtypes={"ffn_": "Q8_0"}).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(full[: max(4, int(len(full) * fraction))])
    with pytest.raises(ModelFileError, match="truncated") as ei:
        load_gguf(path)
    assert str(path) in str(ei.value)
    assert not list(cache_dir.glob("*.pt"))  # nothing half-baked was cached


def test_wrong_architecture(gguf_writer, cache_dir):
    path = gguf_writer(make_model(seed=10), arch="gpt2")
    with pytest.raises(ModelFileError, match="architecture 'gpt2' is not supported") as ei:
        read_metadata(path)
    assert str(path) in str(ei.value)
    with pytest.raises(ModelFileError, match="architecture"):
        load_gguf(path)


def test_sentencepiece_tokenizer(gguf_writer, cache_dir):
    path = gguf_writer(make_model(seed=11), tokenizer_model="llama")
    with pytest.raises(ModelFileError, match="SentencePiece") as ei:
        load_gguf(path)
    assert "byte-level BPE" in str(ei.value)


def test_unsupported_tensor_type(gguf_writer, cache_dir):
    assert "MXFP4" not in gg.SUPPORTED_TYPES
    path = gguf_writer(make_model(seed=12), qtypes={"ffn_up": "MXFP4"})
    with pytest.raises(ModelFileError) as ei:
        load_gguf(path)
    msg = str(ei.value)
    assert "MXFP4" in msg and str(path) in msg and "blk.0.ffn_up.weight" in msg
    assert "not supported" in msg


def test_type_outside_the_supported_set_is_refused(gguf_writer, cache_dir, monkeypatch):
    path = gguf_writer(make_model(seed=13), qtypes={"attn_v": "Q5_1"})
    monkeypatch.setattr(gg, "SUPPORTED_TYPES", gg.SUPPORTED_TYPES - {"Q5_1"})
    with pytest.raises(ModelFileError, match="Q5_1"):
        load_gguf(path)


def test_missing_metadata_key(tmp_path, tok_data, cache_dir):
    path = tmp_path / "nokey.gguf"
    w = gguf_pkg.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tok_data.tokens)
    w.add_token_merges(tok_data.merges)
    w.add_uint32("llama.attention.head_count", 4)
    w.add_uint32("llama.block_count", 2)
    w.add_uint32("llama.feed_forward_length", 128)
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="llama.embedding_length"):
        load_gguf(path)


def test_missing_tensor(gguf_writer, cache_dir, monkeypatch):
    src = make_model(seed=14)
    real = gguf_tensors

    import tiny_lm

    monkeypatch.setattr(
        tiny_lm, "gguf_tensors", lambda m: {k: v for k, v in real(m).items() if k != "blk.1.ffn_down.weight"}
    )
    path = gguf_writer(src)
    with pytest.raises(ModelFileError, match="blk.1.ffn_down.weight.*missing"):
        load_gguf(path)


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EE_CACHE_DIR", str(tmp_path / "x"))
    assert gg.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("EE_CACHE_DIR")
    assert gg.default_cache_dir().name == "emotional-engine"
    assert os.fspath(gg.default_cache_dir()).startswith(os.path.expanduser("~"))


# ---- any metadata values, any cut: read, or a ModelFileError naming the file -------------------

# what read_metadata reads, each with a value of the right type (the tiny tokenizer's and a small llama's)
GOOD_METADATA = {
    "general.architecture": "llama",
    "general.name": "tiny",
    "llama.vocab_size": VOCAB_SIZE,
    "llama.block_count": 2,
    "llama.attention.head_count": 4,
    "llama.attention.head_count_kv": 2,
    "llama.embedding_length": 64,
    "llama.feed_forward_length": 128,
    "llama.context_length": 256,
    "llama.rope.freq_base": 10000.0,
    "llama.attention.layer_norm_rms_epsilon": 1e-5,
    "llama.rope.dimension_count": 16,
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "gpt2",
    "tokenizer.ggml.tokens": make_tokenizer_data().tokens,
    "tokenizer.ggml.token_type": make_tokenizer_data().token_types,
    "tokenizer.ggml.merges": make_tokenizer_data().merges,
    "tokenizer.ggml.bos_token_id": 256,
    "tokenizer.ggml.eos_token_id": make_tokenizer_data().eos_id,
    "tokenizer.ggml.eot_token_id": make_tokenizer_data().eos_id,
    "tokenizer.ggml.eom_token_id": 1,
    "tokenizer.ggml.add_bos_token": False,
    "tokenizer.chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
}
SCALAR_TYPES = {
    bool: gguf_pkg.GGUFValueType.BOOL,
    int: gguf_pkg.GGUFValueType.INT64,
    float: gguf_pkg.GGUFValueType.FLOAT32,
    str: gguf_pkg.GGUFValueType.STRING,
}
ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(width=32),
    st.text(min_size=1, max_size=12),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=6),
    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6),
)


def write_metadata(path, values: dict) -> None:
    """A GGUF file of metadata only, each value in the GGUF type of its Python type."""
    w = gguf_pkg.GGUFWriter(str(path), "llama")  # which writes general.architecture = "llama"
    for key, v in values.items():
        if key == "general.architecture" and v == "llama":
            continue
        if isinstance(v, list):
            w.add_array(key, v)
        else:
            w.add_key_value(key, v, SCALAR_TYPES[type(v)])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_the_good_metadata_reads(tmp_path):
    """The base the next test changes is itself readable (otherwise every change would be refused)."""
    write_metadata(tmp_path / "good.gguf", GOOD_METADATA)
    cfg, tok, name = read_metadata(tmp_path / "good.gguf")
    assert (cfg.n_head, cfg.head_dim, name, tok.bos_id, tok.extra_eos_ids) == (4, 16, "tiny", 256, [1])


@given(changes=st.dictionaries(st.sampled_from(sorted(GOOD_METADATA)), st.none() | ANY_VALUE, min_size=1, max_size=4))
@hsettings(max_examples=150, deadline=None)
def test_any_metadata_values_are_read_or_refused_by_name(changes):
    """Each changed key gets a value of any GGUF type, or is left out (None): read_metadata gives
    well-typed data or a ModelFileError naming the file, never a TypeError or ZeroDivisionError."""
    values = {k: v for k, v in {**GOOD_METADATA, **changes}.items() if v is not None}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "meta.gguf"
        write_metadata(path, values)
        try:
            cfg, tok, name = read_metadata(path)
        except ModelFileError as e:
            assert e.path == str(path) and e.problem
            return
    counts = [cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.n_embd, cfg.intermediate_size]
    counts += [cfg.context_length, cfg.head_dim]
    assert all(type(n) is int and n > 0 for n in counts), cfg
    assert all(type(x) is float and 0 < x < math.inf for x in (cfg.rope_theta, cfg.rms_eps)), cfg
    assert isinstance(name, str) and isinstance(tok.pre, str) and isinstance(tok.chat_template, str | None)
    assert all(isinstance(t, str) for t in tok.tokens + tok.merges) and type(tok.add_bos) is bool
    assert len(tok.token_types) == len(tok.tokens) and all(type(t) is int for t in tok.token_types)
    for i in [tok.bos_id, tok.eos_id, *tok.extra_eos_ids]:
        assert i is None or (type(i) is int and 0 <= i < len(tok.tokens)), tok


def test_any_cut_of_a_model_file_is_refused_by_name(gguf_writer, tmp_path, cache_dir):
    full = gguf_writer(make_model(seed=15), "full.gguf", qtypes={"ffn_": "Q8_0"}).read_bytes()

    @given(end=st.integers(0, len(full) - 1))
    @hsettings(max_examples=60, deadline=None)
    def cut(end):
        path = tmp_path / "cut.gguf"
        path.write_bytes(full[:end])
        for read in (read_metadata, load_gguf):
            with pytest.raises(ModelFileError) as ei:
                read(path)
            assert ei.value.path == str(path)

    cut()
