"""Arc plots: scene positions by word count, and PNGs that actually draw the lines."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from emotional_engine.domain import ArcOut, Measurement, Quality, Scene, SceneTarget, Story
from emotional_engine.emotion.model import ArcWindow
from emotional_engine.plotting import plot_story, plot_windows, scene_midpoints

TAB_RED = np.array([0xD6, 0x27, 0x28]) / 255
TAB_BLUE = np.array([0x1F, 0x77, 0xB4]) / 255


def _has_colour(png, rgb) -> bool:
    img = mpimg.imread(png)[..., :3]
    return bool((np.abs(img - rgb).max(axis=-1) < 0.02).sum() > 20)


def test_scene_midpoints_follow_word_counts():
    assert scene_midpoints([100, 300]) == pytest.approx([0.125, 0.625])
    assert scene_midpoints([0]) == [0.0]


def _story(measured: bool) -> Story:
    scenes = [
        Scene(
            index=i,
            text="word " * n,
            target=SceneTarget(valence=v, emotion="joy"),
            measured=Measurement(valence=-v, arousal=0.1, emotion="sadness", scores={}) if measured else None,
        )
        for i, (n, v) in enumerate([(50, 0.5), (80, -0.6), (60, 0.7)])
    ]
    return Story(
        title="t",
        text="x",
        culture="en-GB",
        language="en",
        arc=ArcOut(name="man_in_a_hole", target=[0.5, -0.6, 0.7]),
        scenes=scenes,
        characters=[],
        quality=Quality(emotion_fit=0, character_consistency=1, cultural_fit=1, coherence=1, diversity=1, overall=0.5),
    )


def test_story_plot_draws_target_and_measured(tmp_path):
    png = plot_story(_story(True), tmp_path / "sub" / "arc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mpimg.imread(png).shape[:2] == (400, 800)
    assert _has_colour(png, TAB_BLUE) and _has_colour(png, TAB_RED)


def test_story_plot_without_measurements_draws_only_the_target(tmp_path):
    png = plot_story(_story(False), tmp_path / "arc.png")
    assert _has_colour(png, TAB_BLUE) and not _has_colour(png, TAB_RED)


def test_window_plot(tmp_path):
    windows = [
        ArcWindow(index=i, start=i / 4, end=(i + 1) / 4, valence=v, arousal=0.0, emotion="joy", scores={})
        for i, v in enumerate([0.5, -0.2, -0.6, 0.4])
    ]
    png = plot_windows(windows, tmp_path / "w.png")
    assert _has_colour(png, TAB_RED)
