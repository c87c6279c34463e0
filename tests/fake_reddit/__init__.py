"""A local stand-in for Reddit's API, for tests (reddit.com cannot be reached here).

:mod:`tests.fake_reddit.fixtures` builds deterministic Reddit JSON things
(t3 posts, t1 comments) from the real posts bundled in data/rmhd-sample;
:mod:`tests.fake_reddit.server` serves them over HTTP on the endpoints praw
uses. ``python -m tests.fake_reddit --port 8765`` runs it by hand.
"""
