import json

import numpy as np
import pytest

from models.portable import ModelFormatError, PortableModel
from tests.conftest import random_model


def test_round_trip_keeps_hash_and_predictions(tmp_path):
    m = random_model(5, sublinear=True)
    m.save(tmp_path / "m")
    back = PortableModel.load(tmp_path / "m")
    assert back.content_hash == m.content_hash
    assert back.version == m.version
    docs = ["i feel so alone", "", "the budget was fine"]
    assert np.array_equal(back.predict_documents(docs), m.predict_documents(docs))


def test_no_pickle_in_saved_files(tmp_path):
    random_model(6).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coef.npy", "idf.npy", "model.json"]
    np.load(tmp_path / "coef.npy", allow_pickle=False)


def test_tampering_is_detected(tmp_path):
    random_model(7).save(tmp_path)
    coef = np.load(tmp_path / "coef.npy")
    coef[0] += 1e-12
    np.save(tmp_path / "coef.npy", coef)
    with pytest.raises(ModelFormatError, match="hash mismatch"):
        PortableModel.load(tmp_path)


def test_metadata_tampering_is_detected(tmp_path):
    random_model(8).save(tmp_path)
    doc = json.loads((tmp_path / "model.json").read_text())
    doc["intercept"] += 1
    (tmp_path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="hash mismatch"):
        PortableModel.load(tmp_path)


def test_future_format_version_refused(tmp_path):
    random_model(9).save(tmp_path)
    doc = json.loads((tmp_path / "model.json").read_text())
    doc["format_version"] = 99
    (tmp_path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFormatError, match="format version 99"):
        PortableModel.load(tmp_path)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFormatError, match=r"no model\.json"):
        PortableModel.load(tmp_path)


def test_shape_mismatch_refused():
    with pytest.raises(ModelFormatError):
        PortableModel(name="x", vocabulary=("a", "b"), idf=np.ones(3), coef=np.ones(2),
                      intercept=0.0)


def test_bundled_model_loads_and_reports(bundled_model):
    r = bundled_model.report
    assert bundled_model.n_nonzero > 0
    assert r["cv_folds"] == 5 and r["validation"] == "lco" and r["n_positive"] > 0
    assert len(r["cv_scores"]) >= 2


def test_version_2_model_round_trips_with_its_feature_settings(tmp_path):
    from tests.conftest import feature_model

    m = feature_model(4, vocab_size=80)
    m.save(tmp_path / "m")
    loaded = PortableModel.load(tmp_path / "m")
    assert loaded.content_hash == m.content_hash and loaded.tokenizer == m.tokenizer
    assert loaded.tokenizer.featureful and loaded.tokenizer.lexicon_digest
    docs = ["Not suicidal. But I want to die", "I can't sleep, hopeless"]
    assert (loaded.predict_documents(docs) == m.predict_documents(docs)).all()
