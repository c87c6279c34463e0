"""Targeted fixes for Beam hot spots: state-cache sizing, DirectRunner Pub/Sub pulls,
DoFn signature inspection.

Beam's SDK harness sizes every value it puts in its state cache with
``objsize.get_deep_size``; for each call objsize first collects the globals of
*every loaded module* to exclude them (about 2,000 modules in this process:
Beam, Google Cloud clients, NumPy, ...). Measured on the screening pipeline
(FnApiRunner, 10k submissions), that exclusion set alone took 40 % of all CPU,
because a stateful DoFn writes state for each user in each bundle.

User state values (bags of :class:`~models.scorer.UserState` and bytes) never
reference module globals, so skipping that exclusion changes no size, only
the cost. :func:`install` rewires ``statecache.get_deep_size`` to call objsize
with ``exclude_modules_globals=False``; it is idempotent, process-wide, and a
no-op (with a log line) if this Beam version does not have the hook.
"""

from __future__ import annotations

import logging

_LOG = logging.getLogger(__name__)
_installed = False


def install() -> bool:
    """Install the cheaper sizing; returns True when it is active."""
    global _installed
    if _installed:
        return True
    try:
        import objsize
        from apache_beam.runners.worker import statecache
    except ImportError:  # pragma: no cover - both ship with apache-beam
        return False
    needed = ("get_deep_size", "_size_func", "_get_referents_func", "_filter_func")
    if not all(hasattr(statecache, name) for name in needed):
        _LOG.info("Beam's state cache has changed; keeping its default sizing")
        return False

    def get_deep_size(*objs):
        return objsize.get_deep_size(
            *objs,
            get_size_func=statecache._size_func,
            get_referents_func=statecache._get_referents_func,
            filter_func=statecache._filter_func,
            exclude_modules_globals=False,
        )

    statecache.get_deep_size = get_deep_size
    _installed = True
    return True


# -- the DirectRunner's Pub/Sub read ---------------------------------------------
DIRECT_PUBSUB_MAX_MESSAGES = 1000
_pubsub_installed = False


class _BatchPullClient:
    """A Pub/Sub subscriber client whose ``pull`` asks for a whole batch."""

    def __init__(self, client, max_messages: int) -> None:
        self._client = client
        self._max = max_messages

    def pull(self, *args, **kwargs):
        kwargs["max_messages"] = self._max
        return self._client.pull(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def install_direct_pubsub(max_messages: int = DIRECT_PUBSUB_MAX_MESSAGES) -> bool:
    """Let the streaming DirectRunner's Pub/Sub read pull batches, not 10 messages.

    Beam's DirectRunner reads Pub/Sub with ``pull(max_messages=10)`` per
    bundle, and each bundle then crosses every stage (state commit, a DuckDB
    insert per table): measured here, that capped a streaming run at about
    60 messages/s with latency growing without bound at 500/s. Asking for up
    to ``max_messages`` per pull changes only bundle sizes (messages are still
    acknowledged after they are read, as before). Other runners read Pub/Sub
    their own way and are not affected. Idempotent; returns True when active.
    """
    global _pubsub_installed
    if _pubsub_installed:
        return True
    try:
        from apache_beam.runners.direct import transform_evaluator as te
    except ImportError:  # pragma: no cover - part of apache-beam
        return False
    evaluator = getattr(te, "_PubSubReadEvaluator", None)
    original = getattr(evaluator, "_get_subscriber_client", None)
    if original is None:
        _LOG.info("Beam's DirectRunner Pub/Sub read has changed; keeping its batch size")
        return False

    def _get_subscriber_client(cls, transform):
        return _BatchPullClient(original.__func__(cls, transform), max_messages)

    evaluator._get_subscriber_client = classmethod(_get_subscriber_client)
    _pubsub_installed = True
    return True


# -- DoFn signatures ------------------------------------------------------------
_SIGNATURES: dict[tuple[type, str], tuple[list, list]] = {}


class CachedSignatures:
    """DoFn mixin: Beam inspects each method's signature once per class, not per bundle.

    The streaming DirectRunner builds a new DoFn runner, and asks whether the
    DoFn is stateful, for every bundle, and a stateful DoFn gets one bundle
    per key; each time it calls ``inspect.signature`` on every method of the
    DoFn (some 60, most inherited). Measured on the screening pipeline reading
    Pub/Sub at 500 messages/s, that was a third of all the runner's time.
    Beam asks ``obj._inspect_<method>()`` first when a DoFn provides it
    (``apache_beam.transforms.core.get_function_arguments``); this mixin
    answers from a per-class cache. A method's signature is fixed by its
    class: DoFns that use this mixin must not replace methods per instance.
    """

    def __getattr__(self, name: str):
        if not name.startswith("_inspect_"):
            raise AttributeError(name)
        method = name[len("_inspect_"):]
        key = (type(self), method)
        found = _SIGNATURES.get(key)
        if found is None:
            from apache_beam.transforms.core import get_function_args_defaults

            found = _SIGNATURES[key] = get_function_args_defaults(getattr(self, method))
        args, defaults = found
        return lambda: (list(args), list(defaults))


# -- the streaming DirectRunner's timer scan --------------------------------------
_timer_scan_installed = False
_commits_with_due_timers = [0]  # bumped when a commit may have brought a due timer


def _has_due_timer(states, watermark) -> bool:
    from apache_beam.transforms.timeutil import TimeDomain

    for state in states:
        for timers in getattr(state, "timers", {}).values():
            for (_name, domain, _tag), timestamp in timers.items():
                if domain != TimeDomain.WATERMARK or timestamp <= watermark:
                    return True
    return False


def install_direct_timer_scan() -> bool:
    """Let the streaming DirectRunner look for due timers only when one can be due.

    After every bundle the DirectRunner looks through the timers of *every
    key* of every stateful step for ones the watermark has passed. Each user
    has an expiry timer, so that scan grows with the number of users: at
    500 messages/s from Pub/Sub it was a fifth of the runner's time after a
    minute (3,000 users), and latency grew without bound. A scan can only find
    something new when the step's input watermark has moved, or when a bundle
    committed a timer that is already due (or a processing-time timer); this
    patch skips the scan otherwise, and keeps Beam's scan, unchanged, for
    every other case (including while fired timers are pending). DirectRunner
    only; idempotent; returns True when active.
    """
    global _timer_scan_installed
    if _timer_scan_installed:
        return True
    try:
        from apache_beam.runners.direct import evaluation_context as ec
        from apache_beam.runners.direct import watermark_manager as wm
    except ImportError:  # pragma: no cover - part of apache-beam
        return False
    watermarks = getattr(wm, "_TransformWatermarks", None)
    context = getattr(ec, "EvaluationContext", None)
    scan = getattr(watermarks, "extract_transform_timers", None)
    handle = getattr(context, "handle_result", None)
    if scan is None or handle is None or not hasattr(watermarks, "input_watermark"):
        _LOG.info("Beam's DirectRunner timers have changed; keeping its timer scan")
        return False

    def handle_result(self, completed_bundle, completed_timers, result):
        states = getattr(result, "partial_keyed_state", None) or {}
        due = False
        if states:
            watermark = self._watermark_manager.get_watermarks(result.transform)
            due = _has_due_timer(states.values(), watermark.input_watermark)
        out = handle(self, completed_bundle, completed_timers, result)
        if due:
            _commits_with_due_timers[0] += 1
        return out

    def extract_transform_timers(self):
        mark = (self.input_watermark, _commits_with_due_timers[0])
        if self.__dict__.get("_earlyrisk_scanned") == mark:
            return [], False
        fired, realtime = scan(self)
        self._earlyrisk_scanned = None if (fired or realtime) else mark
        return fired, realtime

    context.handle_result = handle_result
    watermarks.extract_transform_timers = extract_transform_timers
    _timer_scan_installed = True
    return True
