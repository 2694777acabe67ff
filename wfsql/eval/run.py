"""`wfsql eval-classifier`: any configured feedback classifier against a labelled set.

Labelled rows come from the bundled dev set (text joined from the installed sample package) or from
a table/model with columns history, assistant_reply, user_turn, sat, dsat, sat_categories,
dsat_categories. Classifiers: `keyword` (the lexical baseline), or any model name or role of the
project's `llm:` block (`default` is the embedded SmolLM2), run through the same backend interface
that `feedback_signal()` uses in SQL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wfsql.eval.keyword import keyword_signal
from wfsql.eval.metrics import Evaluation, evaluate


@dataclass(frozen=True)
class LabelledRow:
    history: str
    assistant_reply: str
    user_turn: str
    labels: dict[str, Any]


def cap(history: str, reply: str, max_history_chars: int | None, max_reply_chars: int | None) -> tuple[str, str]:
    """The same caps the template's feedback_candidates applies, so evaluation matches deployment."""
    if max_history_chars is not None:
        history = history[-max_history_chars:] if max_history_chars > 0 else ""
    if max_reply_chars is not None and len(reply) > max_reply_chars:
        reply = reply[: max_reply_chars * 2 // 3] + " [...] " + reply[-(max_reply_chars // 3) :]
    return history, reply


def devset_rows(
    split: str | None, *, max_history_chars: int | None = None, max_reply_chars: int | None = None
) -> list[LabelledRow]:
    from wfsql.eval.devset import load_devset

    turns = load_devset(None if split in (None, "all") else split)
    return labelled_rows(turns, max_history_chars=max_history_chars, max_reply_chars=max_reply_chars)


def labelled_rows(
    turns: Sequence[Any], *, max_history_chars: int | None = None, max_reply_chars: int | None = None
) -> list[LabelledRow]:
    """Labelled turns (`devset.LabelledTurn`) as evaluation rows, history and reply capped as the template caps."""
    rows = []
    for r in turns:
        history, reply = cap(r.history, r.assistant_reply, max_history_chars, max_reply_chars)
        labels = {
            "sat": r.sat,
            "dsat": r.dsat,
            "sat_categories": list(r.sat_categories),
            "dsat_categories": list(r.dsat_categories),
        }
        rows.append(LabelledRow(history, reply, r.user_turn, labels))
    return rows


def table_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[LabelledRow]:
    needed = ("history", "assistant_reply", "user_turn", "sat", "dsat", "sat_categories", "dsat_categories")
    missing = [c for c in needed if c not in columns]
    if missing:
        from wfsql.errors import WfsqlError

        raise WfsqlError(f"the labelled table lacks column(s) {', '.join(missing)}", hint=f"it needs {needed}")
    out = []
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        out.append(
            LabelledRow(
                record["history"] or "",
                record["assistant_reply"] or "",
                record["user_turn"] or "",
                {k: record[k] if not k.endswith("categories") else list(record[k] or []) for k in needed[3:]},
            )
        )
    return out


BUILT_IN_CLASSIFIERS = ("keyword", "calibrated", "lexical")
"""Classifiers `classify` answers without a project model; a project model of the same name is not reachable here."""


def _model_name(runtime: Any, classifier: str) -> str:
    """The project model or role `classifier` names; a typo of a built-in says which one it was probably meant as."""
    from wfsql.errors import WfsqlError, did_you_mean
    from wfsql.llm.functions import FUNCTIONS

    try:
        return str(runtime.model_for(FUNCTIONS["feedback_signal"], classifier, {}))
    except WfsqlError as error:
        if did_you_mean(classifier, BUILT_IN_CLASSIFIERS) is None:
            raise
        settings = runtime.settings  # one suggestion over both kinds of name, so the closest wins
        suggestion = did_you_mean(classifier, [*BUILT_IN_CLASSIFIERS, *settings.models, *settings.roles])
        raise WfsqlError(
            f"eval-classifier: {classifier!r} is no built-in classifier and no model or role of the project; "
            f"{suggestion}",
            hint=f"built-in classifiers: {', '.join(BUILT_IN_CLASSIFIERS)}; or name a model or role from llm:",
        ) from error


def classify(
    rows: Sequence[LabelledRow], classifier: str, runtime: Any = None, *, method: str | None = None,
    encoder: Any = None,
) -> tuple[list[dict[str, Any]], float]:
    """Predictions for every row and the seconds they took (model loading excluded).

    `classifier` is `keyword`, `calibrated` (the calibrated classifier, which may read the default model's hidden
    states through `encoder`), `lexical` (its fit without them), or a model name or role; `method` overrides that
    model's `feedback_method` (auto, calibrated, lexical, rubric).
    """
    if classifier == "keyword":
        started = time.perf_counter()
        return [keyword_signal(r.user_turn) for r in rows], time.perf_counter() - started
    if classifier in BUILT_IN_CLASSIFIERS:  # keyword returned above
        from wfsql.errors import WfsqlError
        from wfsql.llm.calibrated import classifier_for
        from wfsql.llm.models import DEFAULT_INSTALL_HINT, ModelUnavailableError

        model = classifier_for(classifier)
        items = [(r.assistant_reply, r.user_turn, r.history) for r in rows]
        try:
            # Untimed: compiles the patterns and loads a probe's model, unless a snapshot encoder holds that row.
            model.predict_many(items[:1], encoder)
        except (ModelUnavailableError, ImportError) as error:
            raise WfsqlError(
                f"the calibrated classifier reads the default model's hidden states: {error}",
                hint=f"pip install 'wfsql[llm]' and {DEFAULT_INSTALL_HINT}",
            ) from error
        started = time.perf_counter()
        answers = model.predict_many(items, encoder)
        return [value for value, _ in answers], time.perf_counter() - started
    from wfsql.llm.backend import FeedbackInput

    name = _model_name(runtime, classifier)
    backend = runtime.backend(name)
    if method is not None:
        import dataclasses

        from wfsql.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend(dataclasses.replace(backend.spec, feedback_method=method))
    backend.feedback([FeedbackInput(rows[0].history, rows[0].assistant_reply, rows[0].user_turn)])  # warm up
    started = time.perf_counter()
    results = backend.feedback([FeedbackInput(r.history, r.assistant_reply, r.user_turn) for r in rows])
    seconds = time.perf_counter() - started
    empty = {"sat": False, "dsat": False, "sat_categories": [], "dsat_categories": []}
    return [r.value if r.status == "ok" and r.value else empty for r in results], seconds


def run_evaluation(
    rows: Sequence[LabelledRow], classifier: str, runtime: Any = None, *, method: str | None = None,
    encoder: Any = None,
) -> Evaluation:
    predictions, seconds = classify(rows, classifier, runtime, method=method, encoder=encoder)
    return evaluate([r.labels for r in rows], predictions, seconds=seconds)
