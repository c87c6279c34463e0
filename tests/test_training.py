"""Training: deterministic, and `earlyrisk train` reproduces the bundled model."""

import pytest

from corpora.readers import read_training_users
from models.portable import PortableModel
from models.train import TrainConfig, train, training_data_hash
from pipelines.cli import main
from tests.conftest import SIMULATED


@pytest.fixture(scope="module")
def users():
    return read_training_users(SIMULATED / "train.jsonl.gz", SIMULATED / "train-truth.txt")


def test_training_is_deterministic(users):
    small = users[:80]
    cfg = TrainConfig(c_grid=(4.0, 16.0), folds=3)
    a, b = train(small, cfg), train(small, cfg)
    assert a.content_hash == b.content_hash
    assert a.report["training_data_hash"] == training_data_hash(small)
    assert {r["C"] for r in a.report["cv_scores"]} == {4.0, 16.0}


def test_training_needs_both_classes(users):
    negatives = [u for u in users if u.label == 0][:20]
    with pytest.raises(ValueError, match="both"):
        train(negatives)


@pytest.mark.slow
def test_train_cli_reproduces_bundled_model(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "bundled model    identical" in out
    assert PortableModel.load(tmp_path / "m").content_hash == PortableModel.load().content_hash


def test_train_cli_bad_arguments(capsys):
    assert main(["train", "--train", "/nonexistent.jsonl"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--c-grid", "a,b"]) == 2
