"""The Reddit crawler: follows new posts and comments, discovers authors and
publishes their histories in the wire format (``earlyrisk crawl``).

Stages, after the paper's crawler: stream of new submissions/comments ->
author discovery -> filter of already-seen authors (:mod:`crawler.seen`) ->
priority queue of users ordered by a first risk estimate of the revealing
writing (:mod:`crawler.queue`) -> user-history crawler -> publisher
(:mod:`crawler.publishers`: file://, kafka://, pubsub://). The loop is in
:mod:`crawler.crawl`; praw objects become wire messages in
:mod:`crawler.convert`.
"""
