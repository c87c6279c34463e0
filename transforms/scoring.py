"""Per-user stateful scoring and alerting.

:class:`ScoreUsers` batches submissions by user within each bundle
(:class:`BatchByUser`) and runs :class:`_ScoreUserDoFn`, which keeps one
compact :class:`~models.scorer.UserState` per user in keyed state (the
Beam-free scorer does all the arithmetic), reads and writes it once per batch,
and emits, for each submission of the batch in arrival order:

* ``scores``: a :class:`~models.records.ScoreRecord` for every new writing;
* ``alerts``: an :class:`~models.records.AlertRecord` when the decision policy
  fires (the paper's Incremental θ by default, one alert per user);
* ``dead_letters``: redelivered submissions (same id within the user's
  dedupe window), which change no count and no probability;
* ``writings``: the text of each scored writing (unless ``store_text`` is off),
  for expert review.

An event-time timer clears the state of users quiet for ``state_ttl_s``: if
they write again, they start from zero. The timer is set to the end of the
TTL rounded up to a slack of ``min(TTL / 64, 1 day)``, and only moved when a
writing moves it into a later slot (setting a timer on every writing cost
more than a tenth of the pipeline's time): a user is forgotten between the TTL
and the TTL plus that slack after their last writing. Bounded inputs set no
timers (``expiry_timers=False``): their watermark jumps to the end only when
the run ends, so the timers would all fire then, forgetting nothing earlier;
across runs the state store applies the same TTL when a run commits.

With a ``state_spec`` (in-process runs with a state store, see
:mod:`storage.state_store`), ``BatchByUser`` also looks up, in one query per
batch, the stored state of the users it meets for the first time in the run,
the stateful step starts them from it, and at the end of each bundle hands the
states it changed to the run's :class:`~storage.state_store.RunState` (staged
for the commit after the run, or snapshotted by a streaming run).

Writings are scored in the order they
arrive; the final state after all writings does not depend on that order
(counts add up), but each score row reflects what had arrived by then.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from models.engine import (
    ALERTS,
    DEAD_LETTERS,
    DEFAULT_STATE_TTL_S,
    SCORES,
    WRITINGS,
    BatchResult,
    UserProcessor,
    alert_id,
    expiry_slot,
)
from models.policy import IncrementalPolicy
from models.portable import DEFAULT_MODEL_DIR, PortableModel
from models.records import ScoreRecord, Submission
from models.scorer import DEFAULT_DEDUPE_WINDOW, IncrementalScorer, UserState
from pipelines import progress
from storage.state_store import StateSpec, run_state
from transforms import beam_tuning

__all__ = ["ALERTS", "DEFAULT_STATE_TTL_S", "SCORES", "WRITINGS", "BatchByUser", "ScoreUsers",
           "alert_id", "expiry_slot", "shared_scorer"]


_SCORERS: dict[tuple, IncrementalScorer] = {}
_SCORERS_LOCK = threading.Lock()


def shared_scorer(model_dir: str | None) -> IncrementalScorer:
    """One scorer per model per process, reloaded if the model's files change.

    The streaming DirectRunner makes a new DoFn instance, and calls ``setup``,
    for every bundle: loading the model each time cost more than scoring the
    bundle's messages.
    """
    d = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    try:
        stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size)
                      for f in sorted(d.iterdir()) if f.is_file())
    except OSError:
        stamp = ()  # let PortableModel.load report the problem
    key = (str(d), stamp)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            scorer = IncrementalScorer(PortableModel.load(model_dir))
            _SCORERS.clear()  # keep only the current models; old ones are garbage
            _SCORERS[key] = scorer
        return scorer


class _ScoreUserDoFn(beam_tuning.CachedSignatures, beam.DoFn):
    # The state holds the user's UserState *bytes* (its compact, versioned
    # encoding), decoded once per batch: a batch runner keeps every value a
    # bundle wrote until the bundle ends, and a slice's scoring stage is one
    # bundle, so decoded states (~11 KiB a user at 10 writings, against ~0.8 KiB
    # encoded) made peak memory grow with the users a slice meets. The bytes
    # on the wire are what the former UserState coder wrote (a length-prefixed
    # ``to_bytes()``), so existing checkpoints and savepoints read the same.
    USER_STATE = ReadModifyWriteStateSpec("user_state", BytesCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, model_dir: str | None, policy: IncrementalPolicy, state_ttl_s: float,
                 dedupe_window: int, top_n: int, store_text: bool,
                 state_spec: StateSpec | None = None, expiry_timers: bool = True) -> None:
        self._model_dir = model_dir
        self._timers = expiry_timers
        self._spec = state_spec
        self._changed: dict[str, tuple[bytes, int, float]] = {}
        self._store_text = store_text
        self._policy = policy
        self._ttl = state_ttl_s
        self._window = dedupe_window
        self._top_n = top_n
        self._processor: UserProcessor | None = None
        self._scored = Metrics.counter("earlyrisk", "scored")
        self._alerts = Metrics.counter("earlyrisk", "alerts")
        self._dupes = Metrics.counter("earlyrisk", "duplicates")
        self._dead = Metrics.counter("earlyrisk", "dead_lettered")
        self._new_users = Metrics.counter("earlyrisk", "users_new")
        self._resumed = Metrics.counter("earlyrisk", "users_resumed")
        self._expired = Metrics.counter("earlyrisk", "users_expired")

    def setup(self) -> None:
        # The model loads once per worker process, never at import time or into state.
        self._processor = UserProcessor(shared_scorer(self._model_dir), self._policy,
                                        self._window, self._top_n, self._store_text)
        beam_tuning.install()

    # Changed states are handed to the run's RunState in batches of this many
    # users: a batch runner processes a whole slice in one bundle, and holding
    # every changed user's decoded state until its end would keep them all alive.
    CHANGED_BATCH = 10_000

    def start_bundle(self) -> None:
        self._changed = {}

    def finish_bundle(self) -> None:
        self._hand_over()

    def _hand_over(self) -> None:
        if self._spec is not None and self._changed:
            changed, self._changed = self._changed, {}
            run_state(self._spec).changed(changed)

    def _initial_state(self, user_id: str, stored: bytes | None) -> UserState:
        """A user the runner holds no state for: from the store, else a fresh one.

        ``stored`` is what BatchByUser looked up (b"": nothing stored; None: not
        looked up in this batch, e.g. a retried bundle, so look now).
        """
        if self._spec is not None:
            if stored is None:
                stored = run_state(self._spec).lookup(user_id)
            if stored:
                self._resumed.inc()
                return UserState.from_bytes(stored)
        self._new_users.inc()
        return UserState()

    def process(
        self,
        element: tuple[str, list[Submission] | tuple[list[Submission], bytes | None]],
        user_state=beam.DoFn.StateParam(USER_STATE),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ) -> Iterator:
        user_id, subs = element
        stored = None
        if type(subs) is tuple:  # (submissions, stored state) with a state store
            subs, stored = subs
        raw = user_state.read()
        resumed = False
        if raw is None:
            state = self._initial_state(user_id, stored)
            resumed = state.n > 0  # from the store: no timer of this run covers it yet
        else:
            state = UserState.from_bytes(raw)
        result = BatchResult()
        for output, record in self._processor.process(user_id, state, subs, result):
            if output == SCORES:
                yield record
            else:
                if output == ALERTS:
                    self._alerts.inc()
                    progress.tick("alerts")
                elif output == DEAD_LETTERS:
                    self._dupes.inc()
                    self._dead.inc()
                    progress.tick("dead_lettered")
                yield beam.pvalue.TaggedOutput(output, record)
        if result.changed:  # else only redeliveries: nothing changed
            self._scored.inc(result.scored)
            progress.tick("scored", result.scored)
            data = state.to_bytes()
            user_state.write(data)
            if self._spec is not None:
                self._changed[user_id] = (data, state.n, state.last_event)
                if len(self._changed) >= self.CHANGED_BATCH:
                    self._hand_over()
            if self._timers and (resumed or result.timer_moves(state, self._ttl)):
                expiry.set(Timestamp.of(expiry_slot(state.last_event, self._ttl)))

    @on_timer(EXPIRY)
    def expire(self, key=beam.DoFn.KeyParam,
               user_state=beam.DoFn.StateParam(USER_STATE)) -> Iterator:
        # The user has been quiet for the TTL (in event time): forget them.
        self._expired.inc()
        user_state.clear()
        if self._spec is not None and self._spec.streaming:
            # Bounded runs end with the watermark at infinity, which fires every
            # timer: that is the end of the run, not the users' silence.
            self._changed.pop(key, None)
            run_state(self._spec).expired(key)
        return iter(())


class BatchByUser(beam_tuning.CachedSignatures, beam.DoFn):
    """Submission -> (user_id, [submissions]): one element per user per bundle.

    The stateful step then reads and writes a user's state, and sets their
    timer, once per batch rather than once per writing, and Beam moves one
    keyed element where it moved many: on the FnApiRunner that was most of
    the pipeline's per-writing cost. A batch keeps its submissions in arrival
    order and never outlives its bundle (a retried bundle retries its batches),
    so nothing is held back; at most ``max_held`` submissions wait before the
    batches are emitted. Its timestamp is the earliest of its submissions'.
    """

    def __init__(self, max_held: int = 50_000, state_spec: StateSpec | None = None) -> None:
        self._max_held = max_held
        self._spec = state_spec
        self._batches: dict = {}
        self._held = 0

    def start_bundle(self) -> None:
        self._batches = {}
        self._held = 0

    def process(self, sub: Submission, timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam) -> Iterator:
        key = (sub.user_id, window)
        batch = self._batches.get(key)
        if batch is None:
            self._batches[key] = [timestamp, [sub]]
        else:
            batch[1].append(sub)
            if timestamp < batch[0]:
                batch[0] = timestamp
        self._held += 1
        if self._held >= self._max_held:
            yield from self._emit()

    def finish_bundle(self) -> Iterator:
        yield from self._emit()

    def _emit(self) -> Iterator:
        batches, self._batches, self._held = self._batches, {}, 0
        if self._spec is None:
            for (user_id, window), (timestamp, subs) in batches.items():
                yield WindowedValue((user_id, subs), timestamp, (window,))
            return
        # With a state store: look up, in one query, the stored state of every
        # user not met before in this run, and hand it over with the batch.
        stored = run_state(self._spec).prefetch(u for u, _ in batches)
        get = stored.get
        for (user_id, window), (timestamp, subs) in batches.items():
            yield WindowedValue((user_id, (subs, get(user_id))), timestamp, (window,))


class ScoreUsers(beam.PTransform):
    """Submission -> {scores, alerts, dead_letters} through per-user state."""

    def __init__(
        self,
        model_dir: str | None = None,
        policy: IncrementalPolicy = IncrementalPolicy(),
        state_ttl_s: float = DEFAULT_STATE_TTL_S,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
        top_n: int = 8,
        store_text: bool = True,
        state_spec: StateSpec | None = None,
        expiry_timers: bool = True,
    ) -> None:
        """``expiry_timers=False`` for a bounded input: its watermark only moves
        at the end of the run, so every timer would fire then, clearing every
        user at once (a pass over all of them that forgets nothing a later run
        needs: the state store applies the TTL when the run commits)."""
        super().__init__()
        self._spec = state_spec
        if state_ttl_s <= 0:
            raise ValueError("state TTL must be positive")
        if dedupe_window < 1:
            raise ValueError("dedupe window must be at least 1")
        self._fn = _ScoreUserDoFn(model_dir, policy, state_ttl_s, dedupe_window, top_n,
                                  store_text, state_spec, expiry_timers)

    def expand(self, submissions):
        # Local streaming runs: the DirectRunner scans every user's expiry timer
        # only when one can be due (see transforms.beam_tuning); other runners
        # are unaffected.
        beam_tuning.install_direct_timer_scan()
        results = (
            submissions
            | "BatchByUser" >> beam.ParDo(BatchByUser(state_spec=self._spec))
            .with_output_types(tuple[str, list[Submission]] if self._spec is None
                               else tuple[str, Any])
            | "ScoreUser" >> beam.ParDo(self._fn)
            .with_output_types(ScoreRecord)
            .with_outputs(ALERTS, DEAD_LETTERS, WRITINGS, main=SCORES)
        )
        return {SCORES: results[SCORES], ALERTS: results[ALERTS],
                DEAD_LETTERS: results[DEAD_LETTERS], WRITINGS: results[WRITINGS]}
