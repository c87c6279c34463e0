"""A targeted fix for a Beam SDK hot spot that dominated per-user state writes.

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
