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


def test_direct_timer_scan_skips_only_when_nothing_can_be_due():
    from apache_beam.runners.direct.watermark_manager import _TransformWatermarks
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.trigger import InMemoryUnmergedState
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp

    from transforms import beam_tuning

    assert beam_tuning.install_direct_timer_scan()

    class Clock:
        def time(self) -> float:
            return 0.0

    states: dict = {}
    tw = _TransformWatermarks(Clock(), states, transform=None)
    tw._input_watermark = Timestamp(100)
    later = InMemoryUnmergedState()
    later.set_timer(GlobalWindow(), "user/expiry", TimeDomain.WATERMARK, Timestamp(200))
    states[b"u1"] = later
    assert tw.extract_transform_timers() == ([], False)

    # Same watermark, no commit with a due timer: the scan is skipped (a timer
    # slipped in without a commit is not looked for)...
    due = InMemoryUnmergedState()
    due.set_timer(GlobalWindow(), "user/expiry", TimeDomain.WATERMARK, Timestamp(50))
    states[b"u2"] = due
    assert tw.extract_transform_timers() == ([], False)
    # ... a commit that may carry a due timer makes the next call scan ...
    assert beam_tuning._has_due_timer([due], Timestamp(100))
    assert not beam_tuning._has_due_timer([later], Timestamp(100))
    beam_tuning._commits_with_due_timers[0] += 1
    fired, _ = tw.extract_transform_timers()
    assert [(f.encoded_key, f.timestamp) for f in fired] == [(b"u2", Timestamp(50))]
    # ... and so does a watermark that moved.
    states.pop(b"u2")
    tw._input_watermark = Timestamp(300)
    fired, _ = tw.extract_transform_timers()
    assert [(f.encoded_key, f.timestamp) for f in fired] == [(b"u1", Timestamp(200))]


def test_processing_time_timers_always_count_as_due():
    from apache_beam.transforms.timeutil import TimeDomain
    from apache_beam.transforms.trigger import InMemoryUnmergedState
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import Timestamp

    from transforms import beam_tuning

    st = InMemoryUnmergedState()
    st.set_timer(GlobalWindow(), "user/t", TimeDomain.REAL_TIME, Timestamp(10**9))
    assert beam_tuning._has_due_timer([st], Timestamp(0))
