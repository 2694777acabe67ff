"""Model specs, config parsing, model ids, the conversion cache, prompt templates and the feedback shape.

No model is loaded here: these run in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from wfsql.llm import TEMPLATE_VERSIONS, ModelSpec, PromptTemplate, describe_default_model, parse_model_config
from wfsql.llm import models as models_module
from wfsql.llm.feedback import (
    DSAT_CATEGORIES,
    FEEDBACK_JSON_SCHEMA,
    SAT_CATEGORIES,
    check_feedback_value,
    feedback_from_lists,
    feedback_value,
)
from wfsql.llm.prompts import DEFAULT_TEMPLATES, render


def test_parse_model_config_accepts_known_keys(tmp_path: Path) -> None:
    spec = parse_model_config("classifier", {"source": str(tmp_path), "device": "cpu", "dtype": "float32",
                                             "max_new_tokens": 64, "batch_size": 4, "revision": None})
    assert spec == ModelSpec("classifier", str(tmp_path), device="cpu", dtype="float32", max_new_tokens=64,
                             batch_size=4)


def test_parse_model_config_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'max_new_token'.*did you mean 'max_new_tokens'"):
        parse_model_config("m", {"source": "org/model", "max_new_token": 5})


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "'source' is required"),
        ({"source": "org/model", "device": "tpu"}, "device must be one of"),
        ({"source": "org/model", "dtype": "int8"}, "dtype must be one of"),
        ({"source": "org/model", "max_new_tokens": "many"}, "max_new_tokens must be int"),
        ({"source": "org/model", "batch_size": True}, "batch_size must be int"),
        ({"source": "org/model", "batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_parse_model_config_rejects_bad_values(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_config("m", mapping)


def test_gguf_path_is_split_and_model_id_follows_content_not_location(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    payload = b"GGUF" + bytes(range(256)) * 5000
    (first / "m.gguf").write_bytes(payload)
    (second / "m.gguf").write_bytes(payload)
    spec_a = parse_model_config("x", {"source": str(first / "m.gguf")})
    spec_b = ModelSpec("y", str(second), gguf_file="m.gguf")
    assert (spec_a.source, spec_a.gguf_file) == (str(first), "m.gguf")
    assert spec_a.model_id == spec_b.model_id  # same bytes elsewhere: same cached answers
    (second / "m.gguf").write_bytes(payload[:-1] + b"!")
    assert ModelSpec("y", str(second), gguf_file="m.gguf").model_id != spec_a.model_id
    assert ModelSpec("h", "org/model", revision="abc").model_id == "hf:org/model@abc"


def test_converted_dir_follows_wfsql_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFSQL_CACHE_DIR", str(tmp_path / "cache"))
    spec = ModelSpec("h", "org/model")
    assert models_module.converted_dir(spec).parent == tmp_path / "cache" / "models"


def test_atomic_build_leaves_nothing_behind_when_killed(tmp_path: Path) -> None:
    final = tmp_path / "models" / "abc"

    def failing(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # as if the conversion were killed

    with pytest.raises(KeyboardInterrupt):
        models_module._atomic_build(final, failing, {})
    assert not final.exists()
    assert [p.name for p in final.parent.iterdir() if not p.name.endswith(".lock")] == []

    calls = []

    def building(directory: Path) -> None:
        calls.append(directory)
        (directory / "weights.bin").write_bytes(b"w")

    assert models_module._atomic_build(final, building, {"k": 1}) == final
    assert (final / "weights.bin").is_file() and (final / models_module.CONVERTED_MARKER).is_file()
    models_module._atomic_build(final, building, {"k": 1})
    assert len(calls) == 1  # converted once, then reused


def test_describe_default_model_is_one_line() -> None:
    line = describe_default_model()
    assert "\n" not in line and line.startswith("SmolLM2-135M-Instruct")  # `wfsql debug` labels it "default model"


def test_template_versions_and_custom_templates() -> None:
    assert TEMPLATE_VERSIONS == {"classify": "classify/v1", "extract": "extract/v1", "generate": "generate/v1",
                                 "feedback": "feedback/v1", "judge": "judge/v1"}
    custom = PromptTemplate(kind="classify", user="{text} -> {labels}")
    assert custom.version.startswith("classify/custom-")
    assert PromptTemplate(kind="classify", user="{text} => {labels}").version != custom.version
    with pytest.raises(ValueError, match="item line"):
        PromptTemplate(kind="feedback", user="{user_turn}")
    assert render('{"a": 1} {text}', text="x") == '{"a": 1} x'
    assert "{category}" in DEFAULT_TEMPLATES["feedback"].item


def test_feedback_values_are_consistent() -> None:
    probabilities = {name: 0.1 for name in SAT_CATEGORIES + DSAT_CATEGORIES} | {"gratitude": 0.9, "style": 0.7}
    value = feedback_value(probabilities)
    assert value == {"sat": True, "dsat": True, "sat_categories": ["gratitude"], "dsat_categories": ["style"]}
    check_feedback_value(value)
    quiet = feedback_value({name: 0.2 for name in SAT_CATEGORIES + DSAT_CATEGORIES})
    assert quiet == {"sat": False, "dsat": False, "sat_categories": [], "dsat_categories": []}
    decoded = feedback_from_lists({"sat_categories": ["praise", "gratitude", "praise"], "dsat_categories": []})
    assert decoded["sat_categories"] == ["gratitude", "praise"] and decoded["sat"] is True
    with pytest.raises(ValueError, match="sat is False"):
        check_feedback_value({"sat": False, "dsat": False, "sat_categories": ["humor"], "dsat_categories": []})
    assert set(FEEDBACK_JSON_SCHEMA["properties"]) == {"sat_categories", "dsat_categories"}
