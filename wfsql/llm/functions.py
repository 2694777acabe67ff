"""The LLM functions SQL sees, with their DuckDB signatures and the role that serves each by default.

SQL never knows which backend runs a call: a function names a *role* (classifier, generator, ...),
the project maps roles to named models (`llm:` in the project file, or `config(llm={...})` on one
model), and a call site may pass `model := 'name'` to pick one explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from wfsql.llm.feedback import DSAT_CATEGORIES, SAT_CATEGORIES

# The 9 + 9 rubric of design.md lives in one place: wfsql/llm/feedback.py.
# llm_judge's answer (wfsql/llm/judge.py): a verdict among A++, A+, A=B, B+, B++, its probability, the
# expected points for A (A++ = 2 ... B++ = -2) and the five probabilities in that order.
JUDGE_RETURN_TYPE = "STRUCT(verdict VARCHAR, probability DOUBLE, score DOUBLE, probabilities DOUBLE[])"
RUBRIC_SAT = SAT_CATEGORIES
RUBRIC_DSAT = DSAT_CATEGORIES


@dataclass(frozen=True)
class LLMFunction:
    name: str
    arguments: tuple[tuple[str, str], ...]  # (name, DuckDB type) of the required arguments
    options: tuple[str, ...]  # optional named arguments (`name := value`), all VARCHAR
    return_type: str
    role: str
    # optional per-row arguments (name, DuckDB type), positional after the required ones or `name := value`;
    # unlike options they vary row by row, so they travel with the arguments (NULL allowed), not the batch
    optional: tuple[tuple[str, str], ...] = ()

    @property
    def udf_name(self) -> str:
        return f"__wfsql_{self.name}"


FUNCTIONS: dict[str, LLMFunction] = {
    f.name: f
    for f in (
        LLMFunction(
            "llm_classify",
            (("text", "VARCHAR"), ("labels", "VARCHAR[]")),
            ("instruction", "model"),
            "STRUCT(label VARCHAR, probability DOUBLE)",
            "classifier",
        ),
        LLMFunction(
            "llm_extract",
            (("text", "VARCHAR"), ("json_schema", "VARCHAR")),
            ("instruction", "model"),
            "JSON",
            "extractor",
        ),
        LLMFunction("llm_generate", (("prompt", "VARCHAR"),), ("options", "model"), "VARCHAR", "generator"),
        LLMFunction(
            "feedback_signal",
            (("history", "VARCHAR"), ("assistant_reply", "VARCHAR"), ("user_turn", "VARCHAR")),
            ("model",),
            "STRUCT(sat BOOLEAN, dsat BOOLEAN, sat_categories VARCHAR[], dsat_categories VARCHAR[])",
            "classifier",
        ),
        LLMFunction("llm_embed", (("text", "VARCHAR"),), ("model",), "FLOAT[]", "embedder"),
        LLMFunction(
            "llm_judge",
            (("prompt", "VARCHAR"), ("answer_a", "VARCHAR"), ("answer_b", "VARCHAR")),
            ("model",),
            JUDGE_RETURN_TYPE,
            "judge",
            optional=(("checklist", "VARCHAR"),),
        ),
    )
}
ROLE_FALLBACK = {"extractor": "generator", "judge": "generator", "policy": "generator"}
ROLES = frozenset({f.role for f in FUNCTIONS.values()} | set(ROLE_FALLBACK))
"""Role names a call site may pass as `model := ...` even when the project maps none of them."""
