"""LLM backends for wfsql: model specs and loading, the backend interface, and its transformers implementation.

Knows nothing about SQL or DuckDB. Importing this package is cheap: torch, transformers and outlines are
imported on first use of a model. See `backend.py` for the interface and docs/llm.md for the design.
"""

from wfsql.llm.backend import TEMPLATE_VERSIONS, Backend, FeedbackInput, LLMResult
from wfsql.llm.feedback import DSAT_CATEGORIES, SAT_CATEGORIES
from wfsql.llm.models import (
    LoadedModel,
    ModelSpec,
    ModelUnavailableError,
    default_model_spec,
    describe_default_model,
    load_model,
    parse_model_config,
)
from wfsql.llm.prompts import PromptTemplate
from wfsql.llm.transformers_backend import TransformersBackend

__all__ = [
    "DSAT_CATEGORIES",
    "SAT_CATEGORIES",
    "TEMPLATE_VERSIONS",
    "Backend",
    "FeedbackInput",
    "LLMResult",
    "LoadedModel",
    "ModelSpec",
    "ModelUnavailableError",
    "PromptTemplate",
    "TransformersBackend",
    "default_model_spec",
    "describe_default_model",
    "load_model",
    "parse_model_config",
]
