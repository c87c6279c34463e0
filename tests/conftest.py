"""Shared fixtures: the bundled model, small data files, random models, bqemulator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.services import scoped_env
from models.portable import PortableModel
from models.tokenize import LEXICON_GROUPS, NEGATED_PREFIX, Tokenizer, load_lexicon
from tests import bqemulator

REPO = Path(__file__).resolve().parent.parent
SIMULATED = REPO / "data" / "simulated"
TEST_KEY = "test-pseudonym-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    # Never touch the developer's real key file or env key from tests.
    state = tmp_path_factory.getbasetemp() / "xdg-state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("EARLYRISK_PSEUDONYM_KEY", raising=False)


@pytest.fixture(scope="session")
def bundled_model() -> PortableModel:
    return PortableModel.load()


def random_model(seed: int, vocab_size: int = 300, sublinear: bool = False,
                 density: float = 0.5) -> PortableModel:
    """A dense random model over common English words (many non-zero weights)."""
    rng = np.random.default_rng(seed)
    base = PortableModel.load().vocabulary
    vocab = tuple(sorted(rng.choice(np.array(base), size=vocab_size, replace=False).tolist()))
    coef = rng.normal(0, 3, vocab_size) * (rng.random(vocab_size) < density)
    return PortableModel(
        name=f"random-{seed}",
        vocabulary=vocab,
        idf=rng.uniform(1.0, 6.0, vocab_size),
        coef=coef,
        intercept=float(rng.normal(0, 1)),
        sublinear_tf=sublinear,
    )


FEATURES = Tokenizer(version=2, negation_window=3, lexicons=LEXICON_GROUPS)


def feature_model(seed: int, vocab_size: int = 300, sublinear: bool = False,
                  tokenizer: Tokenizer = FEATURES) -> PortableModel:
    """A dense random model with tokenizer version 2 features: words, their
    negated forms and every lexicon pseudo-term (plain and negated)."""
    base = random_model(seed, vocab_size, sublinear, density=0.7)
    rng = np.random.default_rng(seed + 1000)
    words = [w for w in base.vocabulary if rng.random() < 0.7]
    pseudo = sorted({t for lex in [load_lexicon(tokenizer.lexicons)] if tokenizer.lexicons
                     for hits in lex.phrases.values() for t, _ in hits})
    extra = [NEGATED_PREFIX + w for w in base.vocabulary if rng.random() < 0.5]
    vocab = tuple(sorted(set(words) | set(pseudo) | set(extra)
                         | {NEGATED_PREFIX + t for t in pseudo}))
    return PortableModel(
        name=f"features-{seed}",
        vocabulary=vocab,
        idf=rng.uniform(1.0, 6.0, len(vocab)),
        coef=rng.normal(0, 3, len(vocab)),
        intercept=float(rng.normal(0, 1)),
        sublinear_tf=sublinear,
        tokenizer=tokenizer,
    )


def write_jsonl(path: Path, lines: list[str | bytes]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else line.encode())
            f.write(b"\n")
    return path


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    """A running bqemulator; sets $BIGQUERY_EMULATOR_HOST for the session."""
    if not bqemulator.BINARY.exists():
        pytest.skip(f"bqemulator not installed at {bqemulator.BINARY}: run "
                    "'bash deploy/local/install-bqemulator.sh' (make test does)")
    log = tmp_path_factory.mktemp("bqemulator") / "bqemulator.log"
    with bqemulator.running_emulator(log) as host, scoped_env("BIGQUERY_EMULATOR_HOST", host):
        yield host
