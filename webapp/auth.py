"""Who may use the review app: credentials from the environment, never defaults.

* ``EARLYRISK_REVIEW_USERS``: comma-separated ``name:HASH`` pairs, where HASH is
  an scrypt hash made by ``earlyrisk serve --hash-password`` (format
  ``scrypt$N$r$p$SALT$KEY``, base64 salt and key).
* ``EARLYRISK_REVIEW_TOKEN``: a shared access token (at least 16 characters),
  accepted on the sign-in page and, for scripted downloads, as
  ``Authorization: Bearer TOKEN``. Its reviewer name is
  ``EARLYRISK_REVIEW_TOKEN_USER`` (default ``token``).

With neither set the app refuses to start. Failed sign-ins are rate-limited
per client address and per user name (:class:`LoginLimiter`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

USERS_ENV = "EARLYRISK_REVIEW_USERS"
TOKEN_ENV = "EARLYRISK_REVIEW_TOKEN"
TOKEN_USER_ENV = "EARLYRISK_REVIEW_TOKEN_USER"
MIN_TOKEN_CHARS = 16
MIN_PASSWORD_CHARS = 10

# scrypt cost: N=2^14, r=8, p=1 (~16 MiB, tens of ms): the interactive-login
# parameters recommended in the scrypt paper and by OWASP.
_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class CredentialsError(ValueError):
    """The credentials in the environment are missing or malformed."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """An scrypt hash of ``password`` in the ``scrypt$N$r$p$salt$key`` format."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    salt = secrets.token_bytes(16) if salt is None else salt
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt_b, key_b = base64.b64decode(salt), base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=salt_b, n=int(n), r=int(r), p=int(p),
                             dklen=len(key_b), maxmem=128 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key_b)


# Verified against when the user name is unknown, so timing does not reveal names.
_DUMMY_HASH = hash_password("not-a-real-password", salt=b"\0" * 16)


@dataclass(frozen=True)
class Credentials:
    users: Mapping[str, str] = field(default_factory=dict)  # name -> scrypt hash
    token: str | None = None
    token_user: str = "token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        users: dict[str, str] = {}
        for item in (env.get(USERS_ENV) or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, encoded = item.partition(":")
            if not sep or not _NAME.match(name) or not encoded.startswith("scrypt$") \
                    or len(encoded.split("$")) != 6:
                raise CredentialsError(
                    f"{USERS_ENV}: entry {name[:20]!r} is not NAME:scrypt$... "
                    "(make hashes with 'earlyrisk serve --hash-password')")
            users[name] = encoded
        token = env.get(TOKEN_ENV) or None
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise CredentialsError(f"{TOKEN_ENV} must have at least {MIN_TOKEN_CHARS} characters")
        token_user = env.get(TOKEN_USER_ENV) or "token"
        if not _NAME.match(token_user):
            raise CredentialsError(f"{TOKEN_USER_ENV} is not a valid name")
        if not users and token is None:
            raise CredentialsError(
                f"no credentials: set {USERS_ENV} (name:hash, see 'earlyrisk serve "
                f"--hash-password') or {TOKEN_ENV}")
        return cls(users=users, token=token, token_user=token_user)

    def check_password(self, name: str, password: str) -> bool:
        encoded = self.users.get(name)
        ok = verify_password(password, encoded or _DUMMY_HASH)
        return ok and encoded is not None

    def check_token(self, token: str) -> bool:
        if self.token is None or not token:
            return False
        # Compare digests: equal length, constant time.
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(),
                                   hashlib.sha256(self.token.encode()).digest())


class LoginLimiter:
    """Sliding-window limit on failed sign-ins, per client and per user name."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds to wait before another attempt (0: go ahead)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for k in keys:
                q = self._recent(k, now)
                if len(q) >= self.max_failures:
                    wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
