"""A ``praw.Reddit`` for the crawler, with credentials from the environment
or praw.ini (never from the repository).

Read-only, application-only OAuth ("script" or "web" app credentials):
``REDDIT_CLIENT_ID`` and ``REDDIT_CLIENT_SECRET``; ``REDDIT_USER_AGENT``
overrides the default user agent, which Reddit's API rules want unique and
descriptive: ``<platform>:<app id>:<version> (by /u/<username>)``. Without
the environment variables praw reads the ``--site`` section of praw.ini.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

DEFAULT_USER_AGENT = "python:earlyrisk-crawler:v0.1.0 (research screening; by /u/{username})"
_LOOPBACK_NAMES = {"localhost"}


class CredentialsError(ValueError):
    pass


def default_user_agent() -> str:
    return DEFAULT_USER_AGENT.format(username=os.environ.get("REDDIT_USERNAME", "unknown"))


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(url: str) -> str:
    """An API base URL: https anywhere, plain http only on this machine
    (credentials must not cross a network in clear text)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CredentialsError(f"--api-url {url!r}: expected http(s)://HOST[:PORT]")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise CredentialsError(f"--api-url {url!r}: plain http is only allowed for loopback "
                               "hosts (a local test server)")
    return url.rstrip("/")


def make_reddit(site: str | None = None, api_url: str | None = None,
                user_agent: str | None = None, timeout: float | None = None):
    """A read-only ``praw.Reddit``; CredentialsError if no client id is configured."""
    import praw

    kwargs: dict = {"check_for_updates": False}  # no calls home to PyPI at run time
    env = os.environ
    if env.get("REDDIT_CLIENT_ID"):
        kwargs["client_id"] = env["REDDIT_CLIENT_ID"]
        kwargs["client_secret"] = env.get("REDDIT_CLIENT_SECRET")
    kwargs["user_agent"] = user_agent or env.get("REDDIT_USER_AGENT") or default_user_agent()
    if api_url:
        base = check_api_url(api_url)
        kwargs["oauth_url"] = base
        kwargs["reddit_url"] = base
    if timeout:
        kwargs["timeout"] = timeout
    try:
        reddit = praw.Reddit(site or None, **kwargs)
    except Exception as e:  # praw raises MissingRequiredAttributeException et al.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CredentialsError(
            f"Reddit credentials missing or invalid ({first}); set REDDIT_CLIENT_ID and "
            "REDDIT_CLIENT_SECRET, or a praw.ini site (--site)") from None
    reddit.read_only = True
    return reddit
