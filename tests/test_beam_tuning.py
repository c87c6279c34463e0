"""The Beam hot-spot fixes change costs, never answers."""

from __future__ import annotations

from apache_beam.runners.common import DoFnSignature
from apache_beam.transforms import core, userstate

from transforms.scoring import _ScoreUserDoFn
from transforms.sinks import _DuckDBWriteFn


def test_cached_signatures_answer_what_beam_would(monkeypatch):
    from models.policy import IncrementalPolicy

    dofn = _ScoreUserDoFn(None, IncrementalPolicy(), 86_400.0, 16, 5, True)
    for method in ("process", "expire", "setup", "start_bundle", "finish_bundle"):
        want = core.get_function_args_defaults(getattr(dofn, method))
        assert core.get_function_arguments(dofn, method) == want
    assert userstate.get_dofn_specs(dofn) == ({_ScoreUserDoFn.USER_STATE},
                                              {_ScoreUserDoFn.EXPIRY})
    assert DoFnSignature(dofn).is_stateful_dofn()

    # Later bundles never inspect again.
    DoFnSignature(_DuckDBWriteFn("/tmp/x.duckdb", "scores"))
    calls = []
    real = core.get_function_args_defaults
    monkeypatch.setattr(core, "get_function_args_defaults",
                        lambda f: calls.append(f) or real(f))
    for _ in range(3):
        userstate.get_dofn_specs(dofn)
        DoFnSignature(_DuckDBWriteFn("/tmp/x.duckdb", "scores"))
    ours = (_ScoreUserDoFn, _DuckDBWriteFn)
    assert [f for f in calls if isinstance(getattr(f, "__self__", None), ours)] == []


def test_cached_answers_are_copies():
    dofn = _DuckDBWriteFn("/tmp/x.duckdb", "scores")
    args, _ = dofn._inspect_process()
    args.append("mutated")
    assert "mutated" not in dofn._inspect_process()[0]


def test_other_missing_attributes_still_raise():
    dofn = _DuckDBWriteFn("/tmp/x.duckdb", "scores")
    for name in ("no_such_thing", "_inspect_no_such_method"):
        try:
            getattr(dofn, name)
        except AttributeError:
            pass
        else:
            raise AssertionError(f"{name} should not exist")
