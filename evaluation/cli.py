"""``earlyrisk evaluate``: argument handling for the evaluation driver.

The parser lives in :mod:`pipelines.cli` (one console script); this module
turns its arguments into a run of :func:`evaluation.evaluate.evaluate`, with a
progress line on stderr, and prints the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corpora.erisk import CollectionError, CsvColumns
from corpora.simulate import SIMULATED_DIR
from evaluation.evaluate import (
    EvaluationError,
    evaluate,
    format_ranking,
    format_table,
    load_collection,
    write_outputs,
)
from models.decisions import parse_methods
from models.portable import ModelFormatError, PortableModel
from models.scorer import IncrementalScorer
from pipelines import progress


def _default_truth(input_path: str) -> str | None:
    # The bundled splits ship their truth beside them: test.jsonl.gz -> test-truth.txt.
    p = Path(input_path)
    if p.parent.resolve() == SIMULATED_DIR.resolve() and p.name.endswith(".jsonl.gz"):
        return str(p.with_name(p.name[: -len(".jsonl.gz")] + "-truth.txt"))
    return None


def evaluate_command(args: argparse.Namespace) -> int:
    """Run one evaluation; ValueError (with a one-line reason) on bad arguments."""
    inp = Path(args.input)
    if not inp.exists():
        raise ValueError(f"--input: {inp} does not exist")
    if args.format == "erisk" and not inp.is_dir():
        raise ValueError("--format erisk needs a collection directory as --input")
    if args.format != "erisk" and not inp.is_file():
        raise ValueError(f"--input: {inp} is not a file (use --format erisk for a directory)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out: {args.out} is a file; give a directory for the outputs")
    truth = args.truth or _default_truth(args.input)
    if truth is not None and not Path(truth).is_file():
        raise ValueError(f"--truth: {truth} does not exist")
    try:
        erde_os = tuple(float(x) for x in args.erde.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--erde: not a list of numbers: {args.erde!r}") from None
    if not erde_os or min(erde_os) <= 0:
        raise ValueError("--erde values must be positive")
    methods = parse_methods(args.methods)
    try:
        columns = CsvColumns.parse(args.csv_columns)
        model = PortableModel.load(args.model)
    except (ModelFormatError, OSError) as e:
        raise ValueError(f"--model: {e}") from None
    try:
        collection = load_collection(inp, truth, args.format, columns)
    except (CollectionError, EvaluationError) as e:
        raise ValueError(str(e)) from None
    n_users = len(collection.users)
    print(f"evaluating {len(methods)} methods on {n_users} users "
          f"({sum(collection.truth.values())} positive) from {inp}", file=sys.stderr)
    with progress.ProgressLine(("users", "writings"), "writings",
                               enabled=False if args.no_progress else None):
        ev = evaluate(collection, methods, IncrementalScorer(model), erde_os,
                      tick=progress.tick)
    paths = write_outputs(ev, args.out, with_plots=not args.no_plots)
    print(format_table(ev))
    print()
    print("ranking by p_user after round r (users with fewer writings: last score)")
    print(format_ranking(ev))
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(collection.skipped.items()))
    if skipped:
        print(f"\nskipped writings: {skipped}")
    if collection.unlabelled_users:
        print(f"users without a label, left out: {collection.unlabelled_users}")
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
