"""Score kinds (numpy): values, support, similarity, custom functions, the views each kind supports."""

from __future__ import annotations

import numpy as np
import pytest

from sensmap import scores
from sensmap.errors import ParameterError, SensmapError
from sensmap.result import SensitivityResult
from sensmap.windows import window_grids

OUTPUTS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
REFERENCE = np.array([0.5, 0.3, 0.2])


def test_named_kinds_read_one_output_each():
    assert scores.score_values(OUTPUTS, 1, "probability") == pytest.approx([0.2, 0.6, 0.25])
    assert scores.score_values(OUTPUTS, 1, "logit") == pytest.approx([0.2, 0.6, 0.25])
    assert scores.score_values(OUTPUTS, 1, "sigmoid") == pytest.approx([0.2, 0.6, 0.25])
    assert scores.score_values(OUTPUTS, 0, "log-odds") == pytest.approx(np.log([0.7 / 0.3, 0.1 / 0.9, 1 / 3]))
    assert scores.score_values(OUTPUTS[0], 2, "probability") == pytest.approx(0.1)


def test_similarity_is_the_cosine_to_the_unoccluded_output_and_ignores_the_class():
    expected = OUTPUTS @ REFERENCE / (np.linalg.norm(OUTPUTS, axis=1) * np.linalg.norm(REFERENCE))
    for index in (0, 2):
        assert scores.score_values(OUTPUTS, index, "similarity", REFERENCE) == pytest.approx(expected)
    assert scores.score_values(REFERENCE, 0, "similarity", REFERENCE) == pytest.approx(1.0)
    support = scores.window_support(OUTPUTS, REFERENCE, 0, "similarity")
    assert support == pytest.approx(1 - expected) and np.all(support >= 0)
    assert scores.cosine_similarity(np.zeros((1, 3)), REFERENCE) == pytest.approx([0.0])
    with pytest.raises(ParameterError, match="needs the unoccluded output vector"):
        scores.score_values(OUTPUTS, 0, "similarity")


def test_support_is_reference_score_minus_occluded_score():
    support = scores.window_support(OUTPUTS, REFERENCE, 0, "probability")
    assert support == pytest.approx([0.5 - 0.7, 0.5 - 0.1, 0.5 - 0.25])


def test_custom_functions_are_named_by_their_function_and_checked():
    def second_minus_third(outputs):
        return outputs[:, 1] - outputs[:, 2]

    score = scores.resolve_score(second_minus_third)
    assert score.kind == "custom:second_minus_third" and score.custom
    assert scores.validate_score_kind(second_minus_third) == "custom:second_minus_third"
    assert scores.score_values(OUTPUTS, 0, score) == pytest.approx([0.1, 0.3, -0.25], abs=1e-6)
    assert scores.window_support(OUTPUTS, REFERENCE, 0, score) == pytest.approx(
        0.1 - np.array([0.1, 0.3, -0.25]), abs=1e-6
    )
    assert scores.output_activation(score) == "none" and not scores.supports_classes(score)
    with pytest.raises(ParameterError, match="one finite number per image"):
        scores.score_values(OUTPUTS, 0, lambda outputs: outputs)
    with pytest.raises(ParameterError, match="with NaN or infinite values"):
        scores.score_values(OUTPUTS, 0, lambda outputs: outputs[:, 0] * np.inf)
    with pytest.raises(ParameterError, match="not kept with the result: pass the function"):
        scores.score_values(OUTPUTS, 0, "custom:second_minus_third")


def test_kind_names_and_refusals():
    assert (
        scores.validate_score_kind(" Log_Odds ") == "log-odds" and scores.validate_score_kind("logodds") == "log-odds"
    )
    with pytest.raises(ParameterError, match="unknown score 'softmax'"):
        scores.validate_score_kind("softmax")
    assert scores.check_score("probability", "classes").kind == "probability"
    with pytest.raises(ParameterError, match="does not fit a network whose outputs are a feature vector"):
        scores.check_score("probability", "embedding")
    with pytest.raises(ParameterError, match="use 'sigmoid' or 'logit' or 'similarity'"):
        scores.check_score("probability", "multi-label")
    assert scores.check_score(np.sum, "embedding").custom
    assert [scores.default_score(kind) for kind in scores.OUTPUT_KINDS] == ["probability", "sigmoid", "similarity",
                                                                            "logit"]  # fmt: skip
    with pytest.raises(ParameterError, match="unknown output kind 'regression'"):
        scores.validate_output_kind("regression")


def test_which_views_each_kind_supports():
    table = {kind: sorted(scores.supported_views(kind)) for kind in (*scores.SCORE_KINDS, "custom:f")}
    assert table == {
        "probability": ["classes", "label-flip", "top-k"],
        "log-odds": ["classes", "label-flip", "top-k"],
        "logit": ["classes", "label-flip", "top-k"],
        "sigmoid": ["classes", "top-k"],
        "similarity": [],
        "custom:f": [],
    }
    assert scores.view_note("probability", "label-flip") is None
    assert "no single label wins" in scores.view_note("sigmoid", "label-flip")
    assert "not to a class" in scores.view_note("similarity", "classes")
    assert "custom score 'f'" in scores.view_note("custom:f", "top-k")
    assert [scores.output_activation(k) for k in scores.SCORE_KINDS] == ["softmax", "softmax", "none", "sigmoid",
                                                                          "none"]  # fmt: skip
    assert [scores.unit(k) for k in (*scores.SCORE_KINDS, "custom:f")] == [
        (100.0, "pp"), (1.0, "log-odds"), (1.0, "logit"), (100.0, "pp"), (1.0, "similarity"), (1.0, "f"),
    ]  # fmt: skip


def _result(score_kind: str, outputs: np.ndarray, reference: np.ndarray, custom=None) -> SensitivityResult:
    return SensitivityResult(
        model_name="net", labels=tuple(f"l{i}" for i in range(outputs.shape[1])), input_size=(5, 7),
        photo_size=(10, 14), fit="squash", sizes=(0.5,), stride=0.5, fill="gray", score_kind=score_kind,
        target=0, reference_probabilities=reference, outputs=outputs, custom_scores=custom,
    )  # fmt: skip


def test_results_with_scores_without_classes_refuse_class_views_and_keep_custom_scores():
    windows = sum(g.count for g in window_grids(5, 7, (0.5,), 0.5))
    rng = np.random.default_rng(0)
    outputs, reference = rng.normal(size=(windows, 4)), rng.normal(size=4)
    similar = _result("similarity", outputs, reference)
    assert similar.score == pytest.approx(1.0)
    assert similar.window_support() == pytest.approx(1 - scores.cosine_similarity(outputs, reference), abs=1e-6)
    for call in (lambda: similar.maps_for(1), lambda: similar.label_flip(), lambda: similar.contrastive(0, 1)):
        with pytest.raises(ParameterError, match="not to a class|no class that could win"):
            call()
    with pytest.raises(ParameterError, match="make a new map with that score"):
        similar.maps_for(0, "probability")

    values = rng.normal(size=windows + 1)
    custom = _result("custom:brightness", outputs, reference, custom=values)
    assert custom.score == pytest.approx(values[0]) and custom.window_support() == pytest.approx(values[0] - values[1:])
    loaded = SensitivityResult.load(custom.to_npz_bytes())
    assert loaded.score_kind == "custom:brightness" and np.array_equal(loaded.support, custom.support)
    with pytest.raises(SensmapError, match="without its custom scores"):
        _result("custom:brightness", outputs, reference)
    with pytest.raises(SensmapError, match="custom scores of shape"):
        _result("custom:brightness", outputs, reference, custom=values[1:])


def test_multi_label_results_have_other_label_maps_but_no_label_flip():
    windows = sum(g.count for g in window_grids(5, 7, (0.5,), 0.5))
    outputs = np.random.default_rng(1).uniform(size=(windows, 3))
    result = _result("sigmoid", outputs, np.array([0.9, 0.8, 0.1]))
    assert result.maps_for(1)[1].shape == (5, 7)
    with pytest.raises(ParameterError, match="no single label wins"):
        result.label_flip()
    logits = _result("logit", outputs, np.array([0.9, 0.8, 0.1]))
    assert logits.label_flip()[0].shape == (5, 7)
    assert logits.maps_for(0, "similarity")[1].shape == (5, 7)  # both read the raw outputs
