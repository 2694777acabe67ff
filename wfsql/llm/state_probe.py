"""Hidden-state columns of the calibrated feedback classifier: how the default model reads a user turn.

Why: the calibrated classifier's lexical cues miss dissatisfaction that is not said in so many words (a terse
follow-up that redoes the task with a new constraint, a pasted error message). The 135M default model cannot
answer rubric questions (README), but its residual stream after a middle layer, averaged over the user
turn's tokens, separates such turns well enough for a logistic model to use (dev-set README §10).

Three parts, each with one job:
- `probe_text`: the text the model reads, the reply's tail then the turn's head in the chat format;
- `StateEncoder`: runs the first `layer` decoder layers of the default model over batches of such texts and
  averages each user turn's states (the later layers are never computed);
- `Projection`: standardises those states and projects them on principal components fitted on the tuning
  half; the fitted numbers live in the classifier's weights file.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_LAYER = 18
REPLY_CHARS = 400
TURN_CHARS = 400
BATCH_ROWS = 16
COLUMN_PREFIX = "probe_"
SNAPSHOT_FILE = Path(__file__).resolve().parents[1] / "eval" / "data" / "probe_states.npz"

_ASSISTANT_HEADER = "<|im_start|>assistant\n"
_USER_HEADER = "<|im_end|>\n<|im_start|>user\n"
POOLING = "mean"  # how `_pool` reduces a turn's token states; the only pooling implemented
# What a fitted projection and a stored snapshot assume about the text read and how states are pooled. Editing the
# chat headers or `POOLING` changes it: weights fitted under another format refuse to load (cached answers keyed
# by the classifier's version could otherwise be reused for different columns) and such a snapshot is ignored.
TEXT_FORMAT = "{}:{}".format(
    POOLING, hashlib.sha1(f"{_ASSISTANT_HEADER}\x00{_USER_HEADER}".encode()).hexdigest()[:8]
)
# Weights written before the marker existed (up to `feedback/calibrated-196e996d`) were all fitted on this format.
_UNMARKED_TEXT_FORMAT = "mean:a9a8b7c5"


def probe_text(assistant_reply: str, user_turn: str) -> tuple[str, str]:
    """(the context the turn is read after, the turn itself): the reply's last `REPLY_CHARS` characters and the
    turn's first `TURN_CHARS`, in the chat format the model was tuned on. The turn is split off so its tokens
    can be averaged alone."""
    reply = assistant_reply.strip()[-REPLY_CHARS:]
    turn = user_turn.strip()[:TURN_CHARS] or " "
    return f"{_ASSISTANT_HEADER}{reply}{_USER_HEADER}", turn


def text_key(model_id: str, layer: int, assistant_reply: str, user_turn: str) -> str:
    """Content key of one encoding (model, layer and the exact text read), for the snapshot and caches."""
    context, turn = probe_text(assistant_reply, user_turn)
    return hashlib.sha1(f"{model_id}\x00{layer}\x00{context}\x00{turn}".encode()).hexdigest()


class _Stop(Exception):
    """Raised by the layer hook to end a forward pass once the probed layer has run."""

    def __init__(self, hidden: Any) -> None:
        super().__init__("probe layer reached")
        self.hidden = hidden


def _stop_flag(layer_module: Any) -> threading.local:
    """The per-thread switch of the one stopping hook on `layer_module`, installed on first use.

    One hook per layer, kept on the layer itself, however many encoders read that layer of that model: a hook
    raises `_Stop` only in a thread whose switch is on, so other threads (generation on the same shared model)
    run through it untouched.
    """
    with _hook_lock:
        flag = getattr(layer_module, "_wfsql_probe_stop", None)
        if flag is None:
            flag = threading.local()

            def hook(module: Any, args: Any, output: Any) -> None:
                if getattr(flag, "on", False):
                    raise _Stop(output[0] if isinstance(output, tuple) else output)

            layer_module.register_forward_hook(hook)
            layer_module._wfsql_probe_stop = flag
        return flag


_hook_lock = threading.Lock()


class StateEncoder:
    """Mean residual-stream state of each user turn after decoder layer `layer` of a causal LM.

    The model is shared with the rest of the process (`load_model` memoises it), so the encoder never changes
    its weights: a forward hook on layer `layer` (`_stop_flag`) stops the pass there, but only for the thread
    that asked (other threads may be running the same model for generation). With a `snapshot`
    (`SNAPSHOT_FILE`: the dev set's states, computed by this class), known states are looked up by `text_key`
    instead of recomputed; refits and quality tests use it, deployment does not (its speed figures are of real
    work).
    """

    def __init__(
        self, loaded: Any, layer: int = PROBE_LAYER, snapshot: Path | None = None, *,
        load: Callable[[], Any] | None = None, model_id: str | None = None,
    ) -> None:
        """`loaded`: the model (a `LoadedModel`), or None with `load` (called on the first state the snapshot
        lacks) and `model_id` (what `load` will return), so a refit whose states are all stored needs no model."""
        if loaded is None and (load is None or model_id is None):
            raise ValueError("a StateEncoder needs a loaded model, or both `load` and `model_id`")
        self._loaded = loaded
        self._load = load
        self.model_id: str = loaded.model_id if loaded is not None else str(model_id)
        self.layer = layer
        self._capturing: threading.local | None = None
        self._loading = threading.Lock()
        self._known = _read_snapshot(snapshot, self.model_id, layer) if snapshot is not None else {}

    @property
    def loaded(self) -> Any:
        """The model, loaded on first use when the encoder was given a loader."""
        with self._loading:  # two threads encoding at once load once
            if self._loaded is None:
                assert self._load is not None
                loaded = self._load()
                if loaded.model_id != self.model_id:  # checked before keeping it: a retry must fail the same way
                    raise ValueError(f"the probe encoder expected {self.model_id} but loaded {loaded.model_id}")
                self._loaded = loaded
        return self._loaded

    @property
    def width(self) -> int:
        """The state size: the stored states' where there are any (no load), else the model's."""
        if self._known:
            return len(next(iter(self._known.values())))
        return int(self.loaded.model.config.hidden_size)

    def _install_hook(self) -> threading.local:
        if self._capturing is None:
            layers = self.loaded.model.model.layers
            if not 1 <= self.layer <= len(layers):
                raise ValueError(f"probe layer {self.layer} is outside the model's 1..{len(layers)} layers")
            self._capturing = _stop_flag(layers[self.layer - 1])
        return self._capturing

    def encode(self, pairs: Sequence[tuple[str, str]], use_snapshot: bool = True) -> Any:
        """A float32 array (len(pairs), hidden size): one row per (assistant_reply, user_turn)."""
        import numpy as np

        out = np.zeros((len(pairs), self.width), dtype=np.float32)
        rows_of: dict[str, list[int]] = {}  # rows by the text the model reads: each distinct text runs once
        for i, (reply, turn) in enumerate(pairs):
            rows_of.setdefault(text_key(self.model_id, self.layer, reply, turn), []).append(i)
        missing = []
        for key, rows in rows_of.items():
            known = self._known.get(key) if use_snapshot else None
            if known is None:
                missing.append(rows[0])
            else:
                out[rows] = known
        if missing:
            encoded = {i: self._tokens(*pairs[i]) for i in missing}
            order = sorted(missing, key=lambda i: len(encoded[i][0]))
            for start in range(0, len(order), BATCH_ROWS):
                batch = order[start : start + BATCH_ROWS]
                for i, row in zip(batch, self._run([encoded[i] for i in batch]), strict=True):
                    out[i] = row
            for rows in rows_of.values():
                out[rows[1:]] = out[rows[0]]
        return out

    def _tokens(self, reply: str, turn: str) -> tuple[list[int], int]:
        tokenizer = self.loaded.tokenizer
        context, text = probe_text(reply, turn)
        head = tokenizer.encode(context, add_special_tokens=False)
        body = tokenizer.encode(text, add_special_tokens=False) or tokenizer.encode(" ", add_special_tokens=False)
        return head + body, len(head)

    def _run(self, rows: list[tuple[list[int], int]]) -> Any:
        """Mean states of the turn tokens of `rows` (right-padded; causal attention keeps padding out)."""
        import torch

        width = max(len(ids) for ids, _ in rows)
        pad = self.loaded.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, (tokens, _) in enumerate(rows):
            ids[j, : len(tokens)] = torch.tensor(tokens)
            mask[j, : len(tokens)] = 1
        device = self.loaded.device
        capturing = self._install_hook()
        capturing.on = True
        try:
            with torch.inference_mode():
                self.loaded.model.model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            raise RuntimeError(f"the probe hook on layer {self.layer} did not fire")
        except _Stop as stop:
            hidden = stop.hidden.float().cpu()
        finally:
            capturing.on = False
        return [_pool(hidden[j, start : len(tokens)]).numpy() for j, (tokens, start) in enumerate(rows)]


def _pool(turn_states: Any) -> Any:
    """One vector per turn from its tokens' states, as `POOLING` (part of `TEXT_FORMAT`) says."""
    if POOLING == "mean":
        return turn_states.mean(0)
    raise ValueError(f"unknown pooling {POOLING!r}")


def _read_snapshot(path: Path, model_id: str, layer: int) -> dict[str, Any]:
    """Known states by `text_key`, from a snapshot written for this model, layer and `TEXT_FORMAT` (else none)."""
    import numpy as np

    if not path.is_file():
        return {}
    with np.load(path) as data:
        text_format = str(data["text_format"]) if "text_format" in data.files else _UNMARKED_TEXT_FORMAT
        if str(data["model_id"]) != model_id or int(data["layer"]) != layer or text_format != TEXT_FORMAT:
            return {}
        states = data["states"].astype(np.float32)
        return {str(key): states[i] for i, key in enumerate(data["keys"])}


def write_snapshot(path: Path, model_id: str, layer: int, keys: Sequence[str], states: Any) -> None:
    """Store states (float16, which the refit test's tolerance allows) under their `text_key`s."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, model_id=np.array(model_id), layer=np.array(layer), text_format=np.array(TEXT_FORMAT),
                        keys=np.array(list(keys)), states=np.asarray(states, dtype=np.float16))
    tmp.replace(path)


@dataclass(frozen=True)
class Projection:
    """Standardise a state, project it on principal components, scale each to unit variance on the tuning half."""

    model_id: str
    layer: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    component_scale: tuple[float, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f"{COLUMN_PREFIX}{i}" for i in range(len(self.components)))

    def project(self, states: Any) -> Any:
        import numpy as np

        z = (np.asarray(states, dtype=np.float64) - np.array(self.mean)) / np.array(self.scale)
        return z @ np.array(self.components).T / np.array(self.component_scale)

    @classmethod
    def fit(cls, states: Any, count: int, model_id: str, layer: int) -> Projection:
        """The first `count` principal components of `states` (rows: tuning turns), rounded for the JSON file."""
        import numpy as np

        states = np.asarray(states, dtype=np.float64)
        if not 1 <= count <= min(states.shape):
            raise ValueError(f"{count} components asked of {states.shape[0]} states of width {states.shape[1]}")
        mean, scale = np.round(states.mean(0), 6), np.round(states.std(0) + 1e-6, 6)
        z = (states - mean) / scale  # with the rounded numbers `project` will use
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        if singular[count - 1] < 1e-6 * singular[0]:
            rank = int((singular >= 1e-6 * singular[0]).sum())
            raise ValueError(f"{count} components asked but the states have rank {rank}: use fewer (--probe N)")
        components = vt[:count]
        # Fix each component's sign (SVD's is arbitrary) so refits are reproducible across LAPACK builds.
        components *= np.where(components[np.arange(count), np.abs(components).argmax(1)] < 0, -1.0, 1.0)[:, None]
        rounded = np.round(components, 6)
        spread = (z @ rounded.T).std(0)

        def r(values: Any) -> tuple[float, ...]:
            return tuple(round(float(v), 6) for v in values)

        return cls(model_id, layer, r(mean), r(scale), tuple(r(row) for row in rounded), r(spread))

    def to_json(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "layer": self.layer,
            "reply_chars": REPLY_CHARS,
            "turn_chars": TURN_CHARS,
            "text_format": TEXT_FORMAT,
            "mean": list(self.mean),
            "scale": list(self.scale),
            "component_scale": list(self.component_scale),
            "components": [list(row) for row in self.components],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Projection:
        if (raw.get("reply_chars"), raw.get("turn_chars"), raw.get("text_format", _UNMARKED_TEXT_FORMAT)) != (
            REPLY_CHARS, TURN_CHARS, TEXT_FORMAT
        ):
            raise ValueError(
                "calibrated weights' hidden-state columns read other text (lengths, chat format or pooling: "
                f"{raw.get('reply_chars')}/{raw.get('turn_chars')}/{raw.get('text_format', _UNMARKED_TEXT_FORMAT)}, "
                "this wfsql reads "
                f"{REPLY_CHARS}/{TURN_CHARS}/{TEXT_FORMAT}); refit them (python -m wfsql.eval.calibrate)"
            )
        return cls(
            str(raw["model_id"]), int(raw["layer"]), tuple(map(float, raw["mean"])), tuple(map(float, raw["scale"])),
            tuple(tuple(map(float, row)) for row in raw["components"]), tuple(map(float, raw["component_scale"])),
        )
