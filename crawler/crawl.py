"""The crawl loop: streams -> author discovery -> seen filter -> priority
queue -> user-history crawl -> publisher.

One thread, interleaving: each cycle polls the new-posts and new-comments
listings once each (praw streams with ``pause_after=-1``), then crawls the
histories of up to ``users_per_cycle`` queued users, highest first risk
estimate first. Every writing met (in a stream or a history) is published
once. praw's rate limiter paces every request from Reddit's X-Ratelimit
headers; when nothing is new and nobody is queued the loop backs off (up to
16 s) instead of polling hot.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import prawcore

from crawler.convert import SkipError, Writing, to_writing
from crawler.publishers import Publisher
from crawler.queue import UserQueue
from crawler.seen import CrawlState

log = logging.getLogger(__name__)

# A failing Reddit request is logged once, then summarised at most once a minute.
RETRY_REPORT_EVERY_S = 60.0


class _StreamError(Exception):
    """Raised out of a praw stream on a non-fatal API error, so that the crawl loop (not
    praw's own back-off) decides when to retry, and checks its stop conditions first."""

# Errors after which retrying cannot help: bad credentials, a banned or
# missing subreddit, a client bug. Anything else (network, 5xx) is retried.
_FATAL = (prawcore.exceptions.OAuthException, prawcore.exceptions.InvalidToken,
          prawcore.exceptions.Forbidden, prawcore.exceptions.NotFound,
          prawcore.exceptions.Redirect, prawcore.exceptions.BadRequest,
          prawcore.exceptions.InvalidInvocation)
# Per-user history errors: a suspended, shadow-banned or deleted account.
_USER_GONE = (prawcore.exceptions.NotFound, prawcore.exceptions.Forbidden,
              prawcore.exceptions.Redirect)


def is_fatal(e: Exception) -> bool:
    """True for errors a retry cannot fix (rejected credentials answer a bare 401)."""
    if isinstance(e, _FATAL):
        return True
    response = getattr(e, "response", None)
    return (isinstance(e, prawcore.exceptions.ResponseException) and response is not None
            and response.status_code in (400, 401, 403, 404))


@dataclass
class CrawlConfig:
    subreddits: str = "all"
    history_limit: int = 1000  # Reddit listings stop at ~1000 items anyway
    users_per_cycle: int = 5
    max_users: int | None = None
    max_writings: int | None = None
    duration: float | None = None
    queue_capacity: int = 100_000
    max_idle_sleep: float = 16.0
    exit_when_idle: float | None = None  # stop after this long with nothing to do


@dataclass
class CrawlMetrics:
    started: float = field(default_factory=time.monotonic)
    stream_items: int = 0
    history_items: int = 0
    users_discovered: int = 0
    users_queued: int = 0
    users_dropped: int = 0
    users_crawled: int = 0
    users_failed: int = 0
    writings_published: int = 0
    duplicates: int = 0
    publish_failures: int = 0
    api_errors: int = 0
    last_api_error: str | None = None
    skipped: Counter = field(default_factory=Counter)
    ratelimit_remaining: float | None = None
    ratelimit_used: int | None = None

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(self.elapsed(), 3),
            "users_discovered": self.users_discovered,
            "users_queued": self.users_queued,
            "users_dropped": self.users_dropped,
            "users_crawled": self.users_crawled,
            "users_failed": self.users_failed,
            "writings_published": self.writings_published,
            "writings_per_s": round(self.writings_published / self.elapsed(), 2),
            "users_discovered_per_s": round(self.users_discovered / self.elapsed(), 3),
            "users_queued_per_s": round(self.users_queued / self.elapsed(), 3),
            "users_crawled_per_s": round(self.users_crawled / self.elapsed(), 3),
            "stream_items": self.stream_items,
            "history_items": self.history_items,
            "duplicates": self.duplicates,
            "publish_failures": self.publish_failures,
            "api_errors": self.api_errors,
            "last_api_error": self.last_api_error,
            "skipped": dict(sorted(self.skipped.items())),
            "ratelimit_remaining": self.ratelimit_remaining,
            "ratelimit_used": self.ratelimit_used,
        }

    def progress(self) -> str:
        return (f"discovered {self.users_discovered} | queued {self.users_queued} | "
                f"crawled {self.users_crawled} | published {self.writings_published} | "
                f"{self.writings_published / self.elapsed():.1f} writings/s")


class Crawler:
    """Runs the crawl against a ``praw.Reddit``; see the module docstring."""

    def __init__(self, reddit, publisher: Publisher, state: CrawlState, scorer,
                 config: CrawlConfig = CrawlConfig(), progress: TextIO | None = None) -> None:
        self.reddit = reddit
        self.publisher = publisher
        self.state = state
        self.scorer = scorer
        self.config = config
        self.queue = UserQueue(config.queue_capacity)
        self.metrics = CrawlMetrics()
        # (author, priority) in crawl order, recent ones only: for inspection.
        self.crawl_order: deque[tuple[str, float]] = deque(maxlen=10_000)
        self._progress = progress
        self._last_progress = 0.0
        self._errors_reported = 0
        self._last_error_report = 0.0
        publisher.on_failure = self._publish_failed

    # -- stop conditions ------------------------------------------------------
    def done(self) -> bool:
        c, m = self.config, self.metrics
        return ((c.max_users is not None and m.users_crawled >= c.max_users)
                or (c.max_writings is not None and m.writings_published >= c.max_writings)
                or (c.duration is not None and m.elapsed() >= c.duration))

    # -- publishing -----------------------------------------------------------
    def _publish_failed(self, writing: Writing, reason: str) -> None:
        # Forget it so that a later sighting publishes it again.
        self.metrics.publish_failures += 1
        self.state.published.discard(writing.id)
        log.warning("publish failed for %s: %s", writing.id, reason)

    def _publish_once(self, writing: Writing) -> None:
        if self.state.published.add(writing.id):
            self.publisher.publish(writing)
            self.metrics.writings_published += 1
            self.state.tick()
        else:
            self.metrics.duplicates += 1

    def _convert(self, thing: Any) -> Writing | None:
        try:
            return to_writing(thing)
        except SkipError as s:
            self.metrics.skipped[s.reason] += 1
            return None

    # -- discovery ------------------------------------------------------------
    def handle_stream_item(self, thing: Any) -> None:
        self.metrics.stream_items += 1
        writing = self._convert(thing)
        if writing is None:
            return
        if self.state.authors.add(writing.author):
            self.state.tick()
            self.metrics.users_discovered += 1
            priority = self.scorer.score_text(writing.text)
            dropped = self.queue.push(writing.author, priority, writing.id)
            if dropped is None or dropped.author != writing.author:
                self.metrics.users_queued += 1
            if dropped is not None:
                # Forgotten, so that a later writing can discover them again.
                self.metrics.users_dropped += 1
                self.state.authors.discard(dropped.author)
        if not self.done():
            self._publish_once(writing)

    # -- history --------------------------------------------------------------
    def crawl_user(self, author: str, priority: float = 0.0) -> None:
        redditor = self.reddit.redditor(author)
        limit = self.config.history_limit
        try:
            for listing in (redditor.submissions.new(limit=limit),
                            redditor.comments.new(limit=limit)):
                if self.done():
                    return  # stopped mid-history: not counted as crawled
                for thing in listing:
                    self.metrics.history_items += 1
                    writing = self._convert(thing)
                    if writing is not None:
                        self._publish_once(writing)
                    self._tick_progress()
                    if self.done():
                        break
        except _USER_GONE as e:
            self.metrics.users_failed += 1
            self.metrics.skipped[f"user_{type(e).__name__.lower()}"] += 1
            log.info("history of %s unavailable: %s", author, e)
            return
        self.metrics.users_crawled += 1
        self.crawl_order.append((author, priority))

    # -- main loop ------------------------------------------------------------
    def _stream_error(self, e: Exception) -> None:
        self.metrics.api_errors += 1
        self.metrics.last_api_error = _one_line(e)
        if is_fatal(e):
            raise e
        self._report_errors()
        raise _StreamError() from e

    def _report_errors(self, final: bool = False) -> None:
        """The first failure in a warning; then a count at most once a minute (and at the end)."""
        m = self.metrics
        new = m.api_errors - self._errors_reported
        now = time.monotonic()
        if new <= 0:
            return
        if self._errors_reported == 0 and not final:
            log.warning("Reddit request failed, retrying with backoff: %s", m.last_api_error)
        elif final or now - self._last_error_report >= RETRY_REPORT_EVERY_S:
            log.warning("Reddit requests still failing: %d more failure(s), retried "
                        "(last: %s)", new, m.last_api_error)
        else:
            return
        self._errors_reported = m.api_errors
        self._last_error_report = now

    def _streams(self) -> list[Iterator]:
        subs = self.reddit.subreddit(self.config.subreddits)
        return [
            subs.stream.submissions(pause_after=-1, exception_handler=self._stream_error),
            subs.stream.comments(pause_after=-1, exception_handler=self._stream_error),
        ]

    def _drain(self, stream: Iterator) -> int:
        n = 0
        for thing in stream:
            if thing is None:  # pause_after=-1: one listing response consumed
                break
            self.handle_stream_item(thing)
            n += 1
            if self.done():
                break
        return n

    def _update_ratelimit(self) -> None:
        try:
            limits = self.reddit.auth.limits
        except Exception:  # not yet known before the first request
            return
        self.metrics.ratelimit_remaining = limits.get("remaining")
        self.metrics.ratelimit_used = limits.get("used")

    def _tick_progress(self, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 1.0:
            self._last_progress = now
            end = "\n" if force else ""
            self._progress.write("\r" + self.metrics.progress() + "   " + end)
            self._progress.flush()

    def run(self) -> CrawlMetrics:
        cfg = self.config
        streams = self._streams()
        idle = 0.5
        last_activity = time.monotonic()
        try:
            while not self.done():
                new = 0
                failed = False
                for i, stream in enumerate(streams):
                    try:
                        new += self._drain(stream)
                    except _StreamError:
                        # praw's generator has ended: a fresh one resumes from the newest
                        # items (already published ones are skipped by id).
                        streams[i] = self._streams()[i]
                        failed = True
                    if self.done():
                        break
                if failed:  # back off here, where --duration is honoured
                    time.sleep(self._wait(idle))
                    idle = min(idle * 2, cfg.max_idle_sleep)
                    continue
                crawled = 0
                while len(self.queue) and crawled < cfg.users_per_cycle and not self.done():
                    user = self.queue.pop()
                    self.crawl_user(user.author, user.priority)
                    crawled += 1
                    self._tick_progress()
                self._update_ratelimit()
                self._tick_progress()
                if new or crawled:
                    last_activity = time.monotonic()
                elif (cfg.exit_when_idle is not None and not len(self.queue)
                      and time.monotonic() - last_activity >= cfg.exit_when_idle):
                    break
                if new == 0 and crawled == 0 and not self.done():
                    # Nothing new anywhere: back off rather than spend the rate budget.
                    time.sleep(self._wait(idle))
                    idle = min(idle * 2, cfg.max_idle_sleep)
                else:
                    idle = 0.5
        finally:
            self._report_errors(final=True)
            try:
                self.publisher.flush()
            finally:
                self.state.commit()
                self._tick_progress(force=True)
        return self.metrics

    def _wait(self, idle: float) -> float:
        """``idle``, cut short so that the crawl stops on time under --duration."""
        if self.config.duration is None:
            return idle
        return min(idle, max(self.config.duration - self.metrics.elapsed(), 0))


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def print_metrics(metrics: CrawlMetrics, out: TextIO = sys.stdout) -> None:
    d = metrics.as_dict()
    skipped = ", ".join(f"{k} {v}" for k, v in d["skipped"].items()) or "none"
    lines = [
        f"elapsed            {d['elapsed_s']:.1f} s",
        f"users discovered   {d['users_discovered']} ({d['users_discovered_per_s']:.2f}/s)",
        f"users queued       {d['users_queued']} ({d['users_queued_per_s']:.2f}/s; dropped "
        f"from a full queue: {d['users_dropped']})",
        f"users crawled      {d['users_crawled']} ({d['users_crawled_per_s']:.2f}/s; "
        f"unavailable: {d['users_failed']})",
        f"writings published {d['writings_published']} ({d['writings_per_s']:.1f}/s; "
        f"duplicates dropped: {d['duplicates']}, publish failures: {d['publish_failures']})",
        f"items read         {d['stream_items']} from streams, {d['history_items']} from "
        "histories",
        f"skipped            {skipped}",
        f"API errors         {d['api_errors']} (retried)"
        + (f"; last: {d['last_api_error']}" if d["last_api_error"] else ""),
        f"rate limit         remaining {d['ratelimit_remaining']}, used "
        f"{d['ratelimit_used']} in the current window",
    ]
    print("\n".join(lines), file=out)
