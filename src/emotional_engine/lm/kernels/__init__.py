"""The runtime's C++ kernels (qmatmul.cpp: products from quantised blocks; decode.cpp: the decode pass's
fused small steps), registered as torch ops under `torch.ops.ee`.

They are compiled with the machine's compiler by torch's extension builder (ninja) the first time
they are needed, and `make install` builds them ahead (`python -m emotional_engine.lm.kernels`); the
build is cached under torch's extensions folder and rebuilt only when the source changes. Where they
cannot be built or loaded, `ops()` says why once and returns None, and the runtime keeps its PyTorch
path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sysconfig
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)
SOURCES = [Path(__file__).with_name(name) for name in ("qmatmul.cpp", "decode.cpp")]
# what the sources include (blocks.h, paths.h and the arch bodies): torch's builder hashes only the sources
INCLUDED = sorted([*Path(__file__).parent.glob("*.h"), *Path(__file__).parent.glob("*.inc")])
GGML_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}  # what the kernels read


@cache
def ops():
    """`torch.ops.ee` with the kernels loaded, or None (logged once) where they cannot be built."""
    from torch.utils import cpp_extension

    # the ninja that pip installs lives beside this interpreter, which need not be on PATH
    scripts = sysconfig.get_path("scripts")
    os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    included = hashlib.sha256(b"".join(p.read_bytes() for p in INCLUDED))
    try:
        cpp_extension.load(
            name="emotional_engine_kernels",
            sources=[str(p) for p in SOURCES],
            # torch rebuilds when a source or a flag changes; the included body's hash is a flag for that
            extra_cflags=["-O3", "-fopenmp", f"-DEE_INCLUDED_SHA={included.hexdigest()}"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as e:  # no compiler, no ninja, a platform the source does not build on
        log.warning("the runtime's C++ kernels are not available (%s); using the PyTorch path", e)
        return None
    return torch.ops.ee
