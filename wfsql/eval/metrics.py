"""How well a feedback classifier agrees with labels: accuracy, Cohen's kappa, per-category P/R."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CLASSES = ("neither", "SAT", "DSAT", "both")


def four_way(sat: bool, dsat: bool) -> str:
    return "both" if sat and dsat else "SAT" if sat else "DSAT" if dsat else "neither"


def cohen_kappa(truth: Sequence[bool], predicted: Sequence[bool]) -> float:
    """Agreement beyond chance for one binary label; 0 when either side is constant and they differ."""
    n = len(truth)
    if n == 0:
        return float("nan")
    observed = sum(t == p for t, p in zip(truth, predicted, strict=True)) / n
    p_true = sum(truth) / n
    p_pred = sum(predicted) / n
    expected = p_true * p_pred + (1 - p_true) * (1 - p_pred)
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


@dataclass
class CategoryScore:
    support: int
    predicted: int
    true_positives: int

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.support if self.support else None


@dataclass
class Evaluation:
    n: int
    accuracy: float
    sat_kappa: float
    dsat_kappa: float
    sat_precision: float | None
    sat_recall: float | None
    dsat_precision: float | None
    dsat_recall: float | None
    categories: dict[str, CategoryScore] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    turns_per_second: float | None = None

    def summary_row(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 3),
            "sat_kappa": round(self.sat_kappa, 3),
            "dsat_kappa": round(self.dsat_kappa, 3),
            "dsat_precision": None if self.dsat_precision is None else round(self.dsat_precision, 3),
            "dsat_recall": None if self.dsat_recall is None else round(self.dsat_recall, 3),
            "turns_per_second": None if self.turns_per_second is None else round(self.turns_per_second, 2),
        }


def _precision_recall(truth: Sequence[bool], predicted: Sequence[bool]) -> tuple[float | None, float | None]:
    tp = sum(t and p for t, p in zip(truth, predicted, strict=True))
    predicted_count, support = sum(predicted), sum(truth)
    return (tp / predicted_count if predicted_count else None, tp / support if support else None)


def evaluate(
    labels: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any]], *, seconds: float | None = None
) -> Evaluation:
    """`labels` and `predictions` are dicts with sat, dsat, sat_categories, dsat_categories."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    sat_t = [bool(x["sat"]) for x in labels]
    sat_p = [bool(x["sat"]) for x in predictions]
    dsat_t = [bool(x["dsat"]) for x in labels]
    dsat_p = [bool(x["dsat"]) for x in predictions]
    classes_t = [four_way(s, d) for s, d in zip(sat_t, dsat_t, strict=True)]
    classes_p = [four_way(s, d) for s, d in zip(sat_p, dsat_p, strict=True)]
    confusion = {t: dict.fromkeys(CLASSES, 0) for t in CLASSES}
    for t, p in zip(classes_t, classes_p, strict=True):
        confusion[t][p] += 1
    categories: dict[str, CategoryScore] = {}
    for truth, prediction in zip(labels, predictions, strict=True):
        true_set = set(truth["sat_categories"]) | set(truth["dsat_categories"])
        predicted_set = set(prediction.get("sat_categories") or []) | set(prediction.get("dsat_categories") or [])
        for category in true_set | predicted_set:
            score = categories.setdefault(category, CategoryScore(0, 0, 0))
            score.support += category in true_set
            score.predicted += category in predicted_set
            score.true_positives += category in true_set and category in predicted_set
    sat_precision, sat_recall = _precision_recall(sat_t, sat_p)
    dsat_precision, dsat_recall = _precision_recall(dsat_t, dsat_p)
    n = len(labels)
    return Evaluation(
        n=n,
        accuracy=sum(t == p for t, p in zip(classes_t, classes_p, strict=True)) / n if n else float("nan"),
        sat_kappa=cohen_kappa(sat_t, sat_p),
        dsat_kappa=cohen_kappa(dsat_t, dsat_p),
        sat_precision=sat_precision,
        sat_recall=sat_recall,
        dsat_precision=dsat_precision,
        dsat_recall=dsat_recall,
        categories=dict(sorted(categories.items())),
        confusion=confusion,
        turns_per_second=(n / seconds) if seconds else None,
    )
