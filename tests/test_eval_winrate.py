"""Win rate (tie = half, both orders), bootstrap intervals and position bias, on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wfsql.eval.winrate import bootstrap_interval, summarise


def test_all_wins_all_losses_and_all_ties() -> None:
    wins = summarise([(1.0, 1.0)] * 10)
    assert (wins.win_rate, wins.ci_low, wins.ci_high) == (1.0, 1.0, 1.0)
    assert (wins.wins, wins.ties, wins.losses, wins.position_bias) == (20, 0, 0, 0.0)
    losses = summarise([(0.0, 0.0)] * 10)
    assert (losses.win_rate, losses.ci_low, losses.ci_high) == (0.0, 0.0, 0.0)
    ties = summarise([(0.5, 0.5)] * 10)
    assert (ties.win_rate, ties.ties, ties.position_bias, ties.first_position_share) == (0.5, 20, 0.0, None)


def test_a_tie_counts_half_and_both_orders_count() -> None:
    # example 1: won both orders (1); example 2: a win and a tie (0.75); example 3: tie and loss (0.25)
    result = summarise([(1.0, 1.0), (1.0, 0.5), (0.5, 0.0)])
    assert result.win_rate == pytest.approx((1 + 0.75 + 0.25) / 3)
    assert (result.wins, result.ties, result.losses, result.examples) == (3, 2, 1, 3)
    assert result.position_bias == pytest.approx(2 / 3)
    # disagreeing examples count as ties in the consistent win rate
    assert result.consistent_win_rate == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_a_judge_that_always_prefers_position_a() -> None:
    # the candidate wins as A and loses as B on every example: win rate 0.5, position bias 1
    result = summarise([(1.0, 0.0)] * 8, [(2.0, -2.0)] * 8)
    assert result.win_rate == 0.5 and result.position_bias == 1.0 and result.first_position_share == 1.0
    assert result.consistent_win_rate == 0.5
    assert result.mean_score == 0.0  # its constant pull toward A cancels over the two orders
    assert result.ci_low == result.ci_high == 0.5  # every example scores 0.5: no spread to resample
    # a judge that always prefers B
    assert summarise([(0.0, 1.0)] * 4).first_position_share == 0.0


def test_failed_judgments_leave_their_example_out() -> None:
    result = summarise([(1.0, None), (None, None), (0.0, 0.0), (1.0, 1.0)])
    assert (result.examples, result.missing, result.win_rate) == (2, 2, 0.5)
    empty = summarise([(None, 1.0)])
    assert (empty.examples, empty.missing, empty.win_rate, empty.ci_low) == (0, 1, None, None)


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    # 400 examples, half won and half lost: mean 0.5, standard error 0.025, 95% half-width 1.96 * 0.025
    values = [1.0] * 200 + [0.0] * 200
    low, high = bootstrap_interval(values, resamples=4000, seed=1)
    assert low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)
    # a 90% interval is narrower, and the same seed gives the same interval
    narrow = bootstrap_interval(values, resamples=4000, level=0.90, seed=1)
    assert narrow[0] > low and narrow[1] < high
    assert bootstrap_interval(values, resamples=4000, seed=1) == (low, high)
    assert bootstrap_interval([], resamples=10) == (None, None)


def test_bootstrap_interval_covers_the_true_rate_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for trial in range(trials):
        sample = (rng.random(60) < 0.7).astype(float).tolist()
        low, high = bootstrap_interval(sample, resamples=1000, seed=trial)
        covered += low <= 0.7 <= high
    assert 0.89 <= covered / trials <= 0.99


def test_interval_is_over_examples_not_judgments() -> None:
    # two orders that always agree carry no more information than one: the interval equals that of the
    # per-example means
    outcomes = [(1.0, 1.0)] * 30 + [(0.0, 0.0)] * 30
    result = summarise(outcomes, resamples=3000, seed=3)
    per_example = bootstrap_interval([1.0] * 30 + [0.0] * 30, resamples=3000, seed=3)
    assert (result.ci_low, result.ci_high) == per_example
    assert not math.isclose(result.ci_high - result.ci_low, 0.0)
