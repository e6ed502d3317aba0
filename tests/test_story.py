"""The story in words: positions, covered top-3, and the planted shortcut named by position."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import watermark_scenes
from test_render import synthetic_result

import sensmap
from sensmap.story import _percent, describe_position, display_name, key_regions, tell_story


@pytest.mark.parametrize(
    "box, words",
    [
        ((0.0, 0.0, 0.3, 0.3), "upper third, left"),
        ((0.7, 0.4, 1.0, 0.6), "lower third, centre"),
        ((0.4, 0.7, 0.6, 1.0), "middle third, right"),
        ((0.0, 0.0, 1.0, 1.0), "whole image"),
    ],
)
def test_describe_position(box, words):
    assert describe_position(box) == words


def test_percent_never_rounds_to_0_or_100_when_it_is_not():
    assert _percent(0.4123) == "41%"
    assert _percent(0.9996) == "99.96%"
    assert _percent(0.0004) == "0.04%"
    assert _percent(1.0) == "100.0%"


def test_key_regions_come_from_the_kept_outputs():
    result = synthetic_result("net")
    strongest, weakest = key_regions(result)
    support = result.window_support()
    assert strongest.support == pytest.approx(support.max()) and weakest.support == pytest.approx(support.min())
    assert strongest.covered_top3[0][1] == pytest.approx(result.outputs[strongest.window].max())
    assert display_name("timber_wolf") == "timber wolf"


def test_story_names_the_planted_corner_mark(watermark_model):
    network = sensmap.load_model(watermark_model, labels=["red mark", "blue mark"])
    images, labels = watermark_scenes(6, seed=21)
    for image, label in zip(images, labels, strict=True):
        result = sensmap.sensitivity_map(network, image, sizes=(0.25, 0.125))
        assert result.target == label
        strongest, _ = key_regions(result)
        assert strongest.position == "lower third, right"
        story = tell_story(result)
        assert "The strongest support lies in the lower third, right" in story
        assert story.startswith(f"watermark_cnn calls this photo '{result.target_name}'")


def test_story_says_what_covering_turns_the_class_into():
    result = synthetic_result("net")
    story = tell_story(result)
    strongest, _ = key_regions(result)
    assert strongest.position in story
    if strongest.covered_top3[0][0] != result.target_name:
        assert f"into '{display_name(strongest.covered_top3[0][0])}'" in story
    assert np.isfinite(strongest.support)
