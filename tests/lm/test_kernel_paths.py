"""The kernels' fast paths against the portable one in a build without torch (lm/kernels/selftest.cpp):
natively (AVX-512 VNNI or AVX2 here), and for arm64, built with a cross compiler and run under qemu, so
the NEON path is tested on an x86 machine; on an arm64 CPU without the dot product extension the
portable path is chosen. The torch ops' source is compiled for arm64 too (syntax and types only: there is
no arm64 torch to link here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from emotional_engine.lm import kernels

KERNELS = Path(kernels.__file__).parent
TORCH_INCLUDE = Path(torch.__file__).parent / "include"
FORMATS = ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
CROSS = (
    "the arm64 cross compiler or qemu is missing: `make cross-arm64` (apt-get install g++-aarch64-linux-gnu qemu-user)"
)


def build(compiler: str, out: Path, *flags: str) -> Path:
    cmd = [compiler, "-std=c++20", "-O2", f"-I{TORCH_INCLUDE}", str(KERNELS / "selftest.cpp"), "-o", str(out), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def run(*cmd) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)


def passed_every_format(out: str) -> bool:
    lines = out.splitlines()
    return all(sum(line.startswith(f"ok {f} ") for line in lines) == 3 for f in FORMATS) and "FAIL" not in out


def arm64_tools() -> tuple[str, str]:
    cxx = shutil.which("aarch64-linux-gnu-g++")
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if cxx is None or qemu is None:
        pytest.fail(CROSS)
    return cxx, qemu


def test_this_cpus_fast_path_computes_what_the_portable_path_does(tmp_path):
    done = run(build(shutil.which("c++") or "g++", tmp_path / "selftest"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"path: {kernels.ops().path()}"  # the path the torch ops take
    assert passed_every_format(done.stdout)


def test_the_neon_path_computes_what_the_portable_path_does_on_arm64(tmp_path):
    cxx, qemu = arm64_tools()
    exe = build(cxx, tmp_path / "selftest-arm64", "-static")
    done = run(qemu, "-cpu", "max", exe)  # an emulated ARMv8.2+ CPU: it has the dot product extension
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "path: neon-dotprod" and passed_every_format(done.stdout)
    older = run(qemu, "-cpu", "cortex-a53", exe)  # ARMv8.0: no dot product, the portable path
    assert older.returncode == 2 and older.stdout.splitlines()[0] == "path: portable"


def test_the_torch_ops_compile_for_arm64():
    cxx, _ = arm64_tools()
    for source in ("qmatmul.cpp", "decode.cpp"):
        done = subprocess.run(
            [cxx, "-std=c++20", "-fsyntax-only", "-fopenmp", f"-I{TORCH_INCLUDE}",
             f"-I{TORCH_INCLUDE / 'torch/csrc/api/include'}", str(KERNELS / source)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, f"{source}: {done.stderr[-3000:]}"


def test_a_planted_error_in_a_fast_path_is_caught(tmp_path):
    """The self-test can fail: a NEON body that drops Q4_1's minimum term."""
    cxx, qemu = arm64_tools()
    planted = tmp_path / "kernels"
    shutil.copytree(KERNELS, planted, ignore=shutil.ignore_patterns("__pycache__"))
    neon = planted / "neon.inc"
    body = neon.read_text()
    term = "if constexpr (!Q8) acc[j][h] = vfmaq_n_f32(acc[j][h], halves8(b + 16).val[h], xs[j]->dsum[i]);"
    assert term in body
    neon.write_text(body.replace(term, ""))
    exe = tmp_path / "selftest-planted"
    cmd = [cxx, "-std=c++20", "-O2", f"-I{TORCH_INCLUDE}", str(planted / "selftest.cpp"), "-o", str(exe), "-static"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    done = run(qemu, "-cpu", "max", exe)
    assert done.returncode == 1 and "FAIL Q4_1" in done.stdout and "ok Q8_0" in done.stdout
