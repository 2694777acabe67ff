"""The LLM backend interface: what the SQL side may call, and what it gets back.

Public interface (stable; the SQL runtime depends only on this module and `models.py`):

    @dataclass(frozen=True)
    class LLMResult:
        value: Any                  # JSON-able: str (classify, generate), dict/list (extract, feedback); None on error
        status: "ok" | "error"
        error: str | None           # why, when status == "error"
        latency_ms: float           # this item's share of its batch's wall time
        prompt_tokens: int          # tokens the model read for this item (after truncation)
        completion_tokens: int      # tokens it generated (0 for label scoring)
        probability: float | None   # classify: probability of the chosen label
        probabilities: dict[str, float] | None  # classify: per label; feedback: P(yes) per rubric category

    @dataclass(frozen=True)
    class FeedbackInput:
        history: str                # the conversation before the assistant reply, as text
        assistant_reply: str        # the reply the user turn reacts to (turn t-1)
        user_turn: str              # the user turn being classified (turn t)

    class Backend(Protocol):
        model_id: str
        template_versions: dict[str, str]   # {"classify": "classify/v1", "extract": ..., "feedback": ...}
        def classify(texts, labels, *, instruction=None) -> list[LLMResult]
        def extract(texts, json_schema, *, instruction=None, max_new_tokens=None) -> list[LLMResult]
        def generate(prompts, *, system=None, max_new_tokens=256, temperature=0.0, seed=None, stop=None)
            -> list[LLMResult]
        def feedback(items: list[FeedbackInput]) -> list[LLMResult]
            # value = {"sat": bool, "dsat": bool, "sat_categories": [...], "dsat_categories": [...]}
        def judge(items: list[JudgeInput]) -> list[LLMResult]   # JudgeInput(prompt, answer_a, answer_b, checklist)
            # value = {"verdict": "A+", "probability": p, "score": E[points], "probabilities": [5 floats]}
            # (wfsql/llm/judge.py: verdicts A++, A+, A=B, B+, B++; checklist None = judge without one)

Contract of every method:
- takes a whole list and returns one result per input, in input order; batching, length sorting and
  device sizing happen inside (callers never loop row by row);
- never raises for a bad item: an exception on one item becomes an error result for that item alone;
- an "ok" value always has the promised shape: classify returns one of `labels`, extract returns JSON that
  validates against `json_schema`, feedback returns the 9 + 9 rubric with sat/dsat consistent with the lists,
  judge returns one of the five verdicts with probabilities over them;
- deterministic for the same inputs when temperature == 0 (greedy / label scoring), and for the same
  (prompt, seed) when temperature > 0 whatever else is in the batch;
- over-long inputs are cut from the middle (feedback: the history first, then the assistant reply; the
  user turn never) to fit the model's context.

`TEMPLATE_VERSIONS` names the default prompt templates; a backend built with overridden templates (or
settings that change answers, such as a lower context or another feedback threshold) reports versions
derived from them in `template_versions`, so cache keys change when prompts change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from wfsql.llm.feedback import DSAT_CATEGORIES, SAT_CATEGORIES
from wfsql.llm.judge import VERDICTS, JudgeInput
from wfsql.llm.prompts import DEFAULT_TEMPLATES, PromptTemplate

__all__ = [
    "DSAT_CATEGORIES",
    "SAT_CATEGORIES",
    "TEMPLATE_VERSIONS",
    "VERDICTS",
    "Backend",
    "FeedbackInput",
    "JudgeInput",
    "LLMResult",
    "PromptTemplate",
    "Status",
]

Status = Literal["ok", "error"]

TEMPLATE_VERSIONS: dict[str, str] = {kind: template.version for kind, template in DEFAULT_TEMPLATES.items()}
"""Default prompt template version per backend method: {"classify": "classify/v1", ...}."""


@dataclass(frozen=True)
class LLMResult:
    """One answer. `value` is None exactly when `status` is "error"."""

    value: Any
    status: Status = "ok"
    error: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    probability: float | None = None
    probabilities: dict[str, float] | None = None

    @classmethod
    def failure(cls, error: str, *, latency_ms: float = 0.0, prompt_tokens: int = 0) -> LLMResult:
        return cls(None, "error", error, latency_ms, prompt_tokens)

    @classmethod
    def rejected(cls, error: str, *, latency_ms: float = 0.0, prompt_tokens: int = 0) -> LLMResult:
        """The model answered, but the answer did not pass (incomplete or invalid JSON, not a label).

        With greedy or seeded decoding the answer follows from the cache key (model revision, prompt, decoding
        parameters, seed), so on the same hardware running the call again gives the same rejection: the cache
        keeps it as final (`is_rejected`) instead of paying for it on every build. (Another device or dtype can
        round differently near the token limit; `--llm-retry-failed` asks again.) An exception, by contrast, may
        be transient and is retried.
        """
        return cls(None, "error", REJECTED_PREFIX + error, latency_ms, prompt_tokens)


REJECTED_PREFIX = "rejected output: "


def is_rejected(status: str, error: str | None) -> bool:
    """A cached failure that a rerun would repeat (see `LLMResult.rejected`)."""
    return status == "error" and (error or "").startswith(REJECTED_PREFIX)


@dataclass(frozen=True)
class FeedbackInput:
    """One user turn to classify, with what it reacts to."""

    history: str
    assistant_reply: str
    user_turn: str


@runtime_checkable
class Backend(Protocol):
    """What every LLM backend offers. All methods are set operations over lists."""

    model_id: str
    template_versions: dict[str, str]

    def classify(self, texts: list[str], labels: list[str], *, instruction: str | None = None) -> list[LLMResult]:
        """One label per text from the fixed `labels`, with probabilities over the label set."""
        ...

    def extract(
        self, texts: list[str], json_schema: dict[str, Any], *, instruction: str | None = None,
        max_new_tokens: int | None = None,
    ) -> list[LLMResult]:
        """A JSON value per text that validates against `json_schema` (or an error result)."""
        ...

    def generate(
        self, prompts: list[str], *, system: str | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
        seed: int | None = None, stop: list[str] | None = None,
    ) -> list[LLMResult]:
        """Free text per prompt: greedy when temperature == 0, seeded sampling otherwise."""
        ...

    def feedback(self, items: list[FeedbackInput]) -> list[LLMResult]:
        """The WildFeedback SAT/DSAT rubric for each user turn."""
        ...

    def judge(self, items: list[JudgeInput]) -> list[LLMResult]:
        """A pairwise verdict (A++, A+, A=B, B+, B++) per comparison, with or without a checklist."""
        ...
