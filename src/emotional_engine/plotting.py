"""Arc plots (matplotlib, no display needed): the target arc against what the emotion model measured.

Both plots put story position (0 = start, 1 = end) on x and valence in [-1, 1] on y. A story's plot
shows the target per scene and the measured valence per scene at the scene's midpoint (by word
count), and, when given, the measured valence of equal windows of the final text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window
import matplotlib.pyplot as plt  # noqa: E402

from emotional_engine.domain import Story  # noqa: E402
from emotional_engine.emotion.model import ArcWindow  # noqa: E402


def scene_midpoints(word_counts: Sequence[int]) -> list[float]:
    """Each scene's middle as a share of the story's words."""
    total = max(sum(word_counts), 1)
    out, start = [], 0
    for n in word_counts:
        out.append((start + n / 2) / total)
        start += n
    return out


def _axes(title: str):
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.set_xlim(0, 1)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_xlabel("position in the story")
    ax.set_ylabel("valence")
    ax.set_title(title)
    return fig, ax


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_story(story: Story, path: Path, windows: Sequence[ArcWindow] = ()) -> Path:
    x = scene_midpoints([len(s.text.split()) for s in story.scenes])
    fig, ax = _axes(f"{story.title} — {story.arc.name} ({story.culture})")
    ax.plot(x, [s.target.valence for s in story.scenes], "o--", color="tab:blue", label="target (per scene)")
    measured = [(xi, s.measured.valence) for xi, s in zip(x, story.scenes) if s.measured is not None]
    if measured:
        ax.plot(*zip(*measured), "s-", color="tab:red", label="measured (per scene)")
    if windows:
        ax.plot(
            [(w.start + w.end) / 2 for w in windows],
            [w.valence for w in windows],
            ".:",
            color="tab:gray",
            label=f"measured ({len(windows)} windows of the text)",
        )
    for xi, s in zip(x, story.scenes):
        if s.measured is not None:
            ax.annotate(
                s.measured.emotion,
                (xi, s.measured.valence),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
                color="tab:red",
            )
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_windows(windows: Sequence[ArcWindow], path: Path, title: str = "emotional arc") -> Path:
    fig, ax = _axes(title)
    x = [(w.start + w.end) / 2 for w in windows]
    ax.plot(x, [w.valence for w in windows], "o-", color="tab:red", label="valence")
    ax.plot(x, [w.arousal for w in windows], ".:", color="tab:orange", label="arousal")
    for xi, w in zip(x, windows):
        ax.annotate(w.emotion, (xi, w.valence), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)
