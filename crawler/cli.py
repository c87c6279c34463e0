"""``earlyrisk crawl``: argument parsing and the run, for pipelines/cli.py."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from crawler.crawl import CrawlConfig, Crawler, print_metrics

DEFAULT_STATE = "earlyrisk-crawler.sqlite"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "crawl",
        help="crawl Reddit: new posts/comments -> authors -> their histories -> publish",
        description="Follow new posts and comments of the given subreddits, discover their "
        "authors, queue new authors by a first risk estimate of the writing that revealed "
        "them (the bundled model), crawl each queued user's posts and comments (up to "
        "--history-limit each) and publish every writing once in the wire format. "
        "Credentials: REDDIT_CLIENT_ID / REDDIT_CLIENT_SECRET (and REDDIT_USER_AGENT) or a "
        "praw.ini site. See docs/CRAWLER.md.",
    )
    p.add_argument("--subreddits", default="all",
                   help="subreddits to follow, 'a+b+c' (default: all)")
    p.add_argument("--output", default="file://crawled.jsonl",
                   help="file://PATH.jsonl | kafka://HOST:PORT/TOPIC | "
                        "pubsub://projects/P/topics/T (default: file://crawled.jsonl)")
    p.add_argument("--state", default=DEFAULT_STATE,
                   help="SQLite file of seen authors and published ids, kept across runs "
                        f"(default: {DEFAULT_STATE}; ':memory:' for none)")
    p.add_argument("--max-users", type=int, default=None, help="stop after crawling N users")
    p.add_argument("--max-writings", type=int, default=None,
                   help="stop after publishing N writings")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                   help="stop once nothing new has arrived for SECONDS and no user is queued "
                        "(crawl a backlog, then exit)")
    p.add_argument("--history-limit", type=int, default=1000,
                   help="posts and comments fetched per user, each (default 1000, Reddit's "
                        "listing cap)")
    p.add_argument("--users-per-cycle", type=int, default=5,
                   help="histories crawled between two polls of the streams (default 5)")
    p.add_argument("--queue-capacity", type=int, default=100_000,
                   help="users waiting at most; the lowest priority is dropped beyond")
    p.add_argument("--max-authors", type=int, default=5_000_000,
                   help="seen authors remembered (least recently seen forgotten beyond)")
    p.add_argument("--max-published", type=int, default=50_000_000,
                   help="published writing ids remembered for dedupe")
    p.add_argument("--partitions", type=int, default=4,
                   help="partitions of a Kafka topic the crawler creates (default 4)")
    p.add_argument("--model", default=None,
                   help="portable model directory for the first risk estimate (default: "
                        "bundled)")
    p.add_argument("--site", default=None, help="praw.ini site to read credentials from")
    p.add_argument("--user-agent", default=None,
                   help="User-Agent (default: $REDDIT_USER_AGENT or a descriptive default)")
    p.add_argument("--api-url", default=None,
                   help="Reddit API base URL instead of reddit.com (a local test server; "
                        "plain http only on loopback)")
    p.add_argument("--metrics-json", default=None,
                   help="also write the final metrics to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    return p


def cmd_crawl(args: argparse.Namespace) -> int:
    from crawler.publishers import OutputURIError, open_publisher
    from crawler.reddit import CredentialsError, make_reddit
    from crawler.seen import CrawlState
    from models.portable import PortableModel
    from models.scorer import IncrementalScorer
    from pipelines.cli import UsageError

    for name in ("max_users", "max_writings", "history_limit", "users_per_cycle",
                 "queue_capacity", "max_authors", "max_published", "partitions"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("duration", "exit_when_idle"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    try:
        reddit = make_reddit(args.site, args.api_url, args.user_agent)
    except CredentialsError as e:
        raise UsageError(str(e)) from None
    try:
        model = PortableModel.load(args.model)
    except Exception as e:
        raise UsageError(f"--model: {e}") from None
    try:
        publisher = open_publisher(args.output, args.partitions)
    except OutputURIError as e:
        raise UsageError(f"--output: {e}") from None
    except ConnectionError as e:
        print(f"earlyrisk: error: {e}", file=sys.stderr)
        return 1
    state = CrawlState(args.state, max_authors=args.max_authors,
                       max_published=args.max_published)
    config = CrawlConfig(subreddits=args.subreddits, history_limit=args.history_limit,
                         users_per_cycle=args.users_per_cycle, max_users=args.max_users,
                         max_writings=args.max_writings, duration=args.duration,
                         exit_when_idle=args.exit_when_idle,
                         queue_capacity=args.queue_capacity)
    # prawcore logs each of its own retries; the crawler summarises failed requests itself.
    logging.getLogger("prawcore").setLevel(logging.ERROR)
    show = not args.no_progress and sys.stderr.isatty()
    crawler = Crawler(reddit, publisher, state, IncrementalScorer(model), config,
                      progress=sys.stderr if show else None)
    status = 0
    try:
        crawler.run()
    except KeyboardInterrupt:
        print("earlyrisk: interrupted; published writings are flushed", file=sys.stderr)
        status = 130
    except Exception as e:  # a fatal API error: report it in one line with the metrics
        logging.getLogger(__name__).debug("crawl failed", exc_info=True)
        print(f"earlyrisk: error: crawl stopped: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        publisher.close()
        state.close()
    print_metrics(crawler.metrics)
    m = crawler.metrics
    if status == 0 and m.api_errors and not (m.stream_items or m.history_items):
        print(f"earlyrisk: error: Reddit was not reachable: all {m.api_errors} requests "
              f"failed (last: {m.last_api_error})", file=sys.stderr)
        status = 1
    if args.metrics_json:
        with open(args.metrics_json, "w", encoding="utf-8") as f:
            json.dump(crawler.metrics.as_dict(), f, indent=2)
    return status
