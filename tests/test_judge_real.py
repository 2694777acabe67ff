"""`llm_judge` on the real default model (SmolLM2-135M-Instruct): valid verdicts in both orders, with and
without a checklist, and the position bias it shows. Marked slow (see tests/test_llm_real.py)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("torch")

from wfsql.eval.winrate import summarise
from wfsql.llm import TransformersBackend, default_model_spec
from wfsql.llm.judge import VERDICTS, JudgeInput, check_judge_value, outcome
from wfsql.llm.models import ModelUnavailableError

pytestmark = pytest.mark.slow

# (conversation, better reply, worse reply, checklist)
CASES = [
    (
        "User: What is the capital of France?",
        "The capital of France is Paris.",
        "I like turtles.",
        "- answer the question directly",
    ),
    (
        "User: Write a haiku about rain, in lowercase.",
        "soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky",
        "RAIN FALLS DOWN. IT IS WET. THE END.",
        "- use lowercase only\n- write a haiku",
    ),
    (
        "User: How do I reverse a list in Python? Be concise.",
        "Use `my_list[::-1]` or `my_list.reverse()`.",
        "Python was created by Guido van Rossum in 1991 and has lists, dictionaries and sets.",
        "- be concise\n- show the Python code",
    ),
    ("User: Translate 'good morning' into Spanish.", "Buenos días.", "Good morning to you too!", "- reply in Spanish"),
]


@pytest.fixture(scope="module")
def real() -> TransformersBackend:
    try:
        backend = TransformersBackend(default_model_spec())
        backend.loaded  # noqa: B018 - load (and convert on first use) here
    except ModelUnavailableError as error:
        pytest.skip(str(error))
    return backend


def test_real_judge_gives_valid_verdicts_in_both_orders(real: TransformersBackend) -> None:
    items = []
    for prompt, good, bad, checklist in CASES:
        for with_checklist in (checklist, None):
            items += [JudgeInput(prompt, good, bad, with_checklist), JudgeInput(prompt, bad, good, with_checklist)]
    results = real.judge(items)
    for result in results:
        assert result.status == "ok", result.error
        check_judge_value(result.value)
    verdicts = [r.value["verdict"] for r in results]
    assert set(verdicts) <= set(VERDICTS)
    # with and without the checklist are different prompts: different probabilities
    assert results[0].value["probabilities"] != results[2].value["probabilities"]
    outcomes = [(outcome(verdicts[i], True), outcome(verdicts[i + 1], False)) for i in range(0, len(items), 2)]
    summary = summarise(outcomes, resamples=200)
    # SmolLM2-135M is a weak judge: report, do not assert, how often it flips with the order
    print(
        f"\nreal judge: win rate of the better reply {summary.win_rate:.2f}, position bias "
        f"{summary.position_bias:.2f}, first-position share {summary.first_position_share}, verdicts {verdicts}"
    )
    assert summary.examples == len(CASES) * 2
    # deterministic: the same judgment again, alone in its batch
    again = real.judge([items[1]])[0]
    assert again.value["verdict"] == verdicts[1]
    assert again.value["probabilities"] == pytest.approx(results[1].value["probabilities"], abs=1e-4)
