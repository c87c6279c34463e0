"""Shared fixtures: a real BigQuery emulator for the whole session."""

from __future__ import annotations

import os

import pytest

from tests import bqemulator


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    """A running bqemulator; sets $BIGQUERY_EMULATOR_HOST for the session."""
    if not bqemulator.BINARY.exists():
        pytest.skip(f"bqemulator not installed at {bqemulator.BINARY}: run "
                    "'bash deploy/local/install-bqemulator.sh' (make test does)")
    log = tmp_path_factory.mktemp("bqemulator") / "bqemulator.log"
    previous = os.environ.get("BIGQUERY_EMULATOR_HOST")
    with bqemulator.running_emulator(log) as host:
        os.environ["BIGQUERY_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            if previous is None:
                os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
            else:
                os.environ["BIGQUERY_EMULATOR_HOST"] = previous
