"""Credentials, password hashing, rate limiting, and the CLI's refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from webapp.auth import Credentials, CredentialsError, LoginLimiter, hash_password, verify_password


def test_hash_round_trip_and_salt():
    h1, h2 = hash_password("a long password"), hash_password("a long password")
    assert h1 != h2 and h1.startswith("scrypt$")
    assert verify_password("a long password", h1)
    assert not verify_password("a long passworD", h1)
    assert not verify_password("a long password", "scrypt$garbage")
    with pytest.raises(ValueError):
        hash_password("short")


def test_credentials_from_env():
    h = hash_password("a long password")
    c = Credentials.from_env({"EARLYRISK_REVIEW_USERS": f"alice:{h}, bob:{h}"})
    assert c.check_password("alice", "a long password")
    assert not c.check_password("carol", "a long password")
    assert not c.check_token("anything-at-all-really")
    t = Credentials.from_env({"EARLYRISK_REVIEW_TOKEN": "x" * 16})
    assert t.check_token("x" * 16) and not t.check_token("x" * 15)
    for env, msg in [({}, "no credentials"),
                     ({"EARLYRISK_REVIEW_USERS": "alice:plaintext"}, "not NAME:scrypt"),
                     ({"EARLYRISK_REVIEW_TOKEN": "short"}, "at least 16")]:
        with pytest.raises(CredentialsError, match=msg):
            Credentials.from_env(env)


def test_limiter_window():
    lim = LoginLimiter(max_failures=3, window_s=60)
    keys = ["ip:1", "user:a"]
    for _ in range(3):
        assert lim.retry_after(keys, now=100) == 0
        lim.failed(keys, now=100)
    assert lim.retry_after(keys, now=110) == pytest.approx(50)
    assert lim.retry_after(["ip:2"], now=110) == 0
    assert lim.retry_after(keys, now=161) == 0


def _serve(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_serve_refuses_to_start_without_credentials(tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARLYRISK_REVIEW")}
    r = _serve("--db", str(tmp_path / "x.duckdb"), env=env)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no credentials" in r.stderr
    env["EARLYRISK_REVIEW_TOKEN"] = "y" * 20
    r = _serve("--db", str(tmp_path / "x.duckdb"), env=env)
    assert r.returncode == 2 and "no database" in r.stderr
    r = _serve("--port", "0", env=env)
    assert r.returncode == 2 and "--port" in r.stderr


def test_hash_password_command():
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "--hash-password"],
                       input="my long password\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert verify_password("my long password", r.stdout.strip())
