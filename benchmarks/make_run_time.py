"""Wall time of `make run`'s story command (the README's first command, after install), optionally
for another checkout of the project run with this venv: the before/after of a change; with `--long`,
also a 600-word story written with 4 candidates a scene (the issue-15 measure of a longer story).

    .venv/bin/python benchmarks/make_run_time.py                       # this checkout
    .venv/bin/python benchmarks/make_run_time.py --src /tmp/before/src  # e.g. a `git worktree` of an older commit

The command is read from the Makefile's `run` recipe, so it stays the one a newcomer runs. Another
checkout's kernels are built into their own extensions folder first (outside the timing).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_command() -> list[str]:
    """The `run:` recipe of the Makefile, `$(BIN)/` made this venv's bin folder."""
    text = ROOT.joinpath("Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    line = " ".join(part.strip().rstrip("\\").strip() for part in recipe.splitlines())
    return shlex.split(line.replace("$(BIN)/", str(Path(sys.executable).parent) + "/"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, help="another checkout's src folder to import the engine from")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--long", action="store_true", help="also time a 600-word story with 4 candidates")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(args.src.resolve())
        env["TORCH_EXTENSIONS_DIR"] = str(args.src.resolve().parent / ".torch-extensions")
        subprocess.run([sys.executable, "-m", "emotional_engine.lm.kernels"], env=env, check=True)
    commands = [run_command()]
    if args.long:
        commands.append([*commands[0][:2], "--premise", LONG_PREMISE, "--arc", "man_in_a_hole", "--culture", "en-GB",
                         "--words", "600", "--seed", "11", "--candidates", "4"])  # fmt: skip
    for cmd in commands:
        time_command(cmd, env, args)


LONG_PREMISE = "A ferry pilot finds a stowaway who claims to be her daughter from a future that has not happened."


def time_command(cmd: list[str], env: dict, args: argparse.Namespace) -> None:
    print("command:", " ".join(cmd[1:]), "| engine from", args.src or "this checkout")
    for i in range(args.runs):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            sys.exit(f"the command failed ({done.returncode}): {done.stderr[-2000:]}")
        quality = next((ln for ln in done.stdout.splitlines() if ln.startswith("Quality:")), "")
        print(f"run {i + 1}: {wall:.1f} s wall  {quality}")


if __name__ == "__main__":
    main()
