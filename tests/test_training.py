"""Training: leave-communities-out folds, determinism, the artefact guard, the
model card, user-level formats, and `earlyrisk train` reproducing the bundled model."""

import csv
from collections import Counter, defaultdict

import numpy as np
import pytest

from corpora.erisk import write_erisk
from corpora.readers import read_training_users, read_truth, read_wire_streams
from corpora.rmhd import POSITIVE_COMMUNITIES, rmhd_documents
from models.card import artefacts, model_card, top_terms
from models.portable import PortableModel
from models.train import TrainConfig, lco_folds, train, training_data_hash
from pipelines.cli import main
from tests.conftest import REPO, SIMULATED

ERISK_MINI = REPO / "tests" / "fixtures" / "erisk-mini"
ERISK_MINI_TRUTH = REPO / "tests" / "fixtures" / "erisk-mini-truth.txt"


@pytest.fixture(scope="module")
def docs():
    return rmhd_documents()


@pytest.fixture(scope="module")
def users():
    return read_training_users(SIMULATED / "train.jsonl.gz", SIMULATED / "train-truth.txt")


def test_rmhd_labels_are_the_documented_communities(docs):
    assert len(docs) == 7020
    pos = {d.community for d in docs if d.label == 1}
    assert pos == set(POSITIVE_COMMUNITIES)
    assert len({d.community for d in docs if d.label == 0}) == 25
    assert Counter(d.label for d in docs)[1] == 520


def test_lco_folds_hold_communities_out_whole_and_never_split_a_person(docs):
    folds, held = lco_folds(docs, 5, 20200630)
    comm = np.array([d.community for d in docs], dtype=object)
    labels = np.array([d.label for d in docs])
    person = np.array([d.person for d in docs], dtype=object)
    seen_controls = []
    for f, (tr, te) in enumerate(folds):
        assert not set(tr) & set(te)
        held_out = set(comm[te[labels[te] == 0]].tolist())
        assert held_out == set(held[f])
        seen_controls += sorted(held_out)
        # every post of a held-out community is in the test part, none in training
        assert not held_out & set(comm[tr].tolist())
        assert np.sum(np.isin(comm, list(held_out))) == np.sum(labels[te] == 0)
        # nobody has writings on both sides
        assert not set(person[tr].tolist()) & set(person[te].tolist())
        # positives of both positive communities are held out in every fold
        assert set(comm[te[labels[te] == 1]].tolist()) == set(POSITIVE_COMMUNITIES)
    assert sorted(seen_controls) == sorted({d.community for d in docs if d.label == 0})


def _small(docs, per_community=40):
    keep = {"depression", "suicidewatch", "anxiety", "lonely", "guns", "teaching",
            "personalfinance", "bpd"}
    count: dict[str, int] = defaultdict(int)
    out = []
    for d in docs:
        if d.community in keep and count[d.community] < per_community:
            count[d.community] += 1
            out.append(d)
    return out


def test_lco_training_is_deterministic_and_reports_per_community(docs):
    small = _small(docs)
    cfg = TrainConfig(c_grid=(0.5, 2.0), sublinear_grid=(True,), folds=3)
    a, b = train(small, cfg), train(small, cfg)
    assert a.content_hash == b.content_hash
    r = a.report
    assert r["training_data_hash"] == training_data_hash(small)
    assert {(x["penalty"], x["C"]) for x in r["cv_scores"]} == {
        ("l1", 0.5), ("l1", 2.0), ("l2", 0.5), ("l2", 2.0)}
    assert set(r["lco"]["per_community"]) == {
        "anxiety", "lonely", "guns", "teaching", "personalfinance", "bpd"}
    for v in r["lco"]["per_community"].values():
        assert 0.0 <= v["auc"] <= 1.0 and v["n_control"] == 40
    # the term filter: no kept term draws more than half its occurrences from one control
    for c in r["term_concentration"].values():
        assert c["top_control_share"] <= 0.5
    assert r["calibration"]["scale"] > 0


def test_user_level_kfold_training(users):
    small = users[:80]
    cfg = TrainConfig(validation="kfold", c_grid=(4.0, 16.0), penalty_grid=("l1",), folds=3,
                      max_control_share=None, calibrate=False)
    a, b = train(small, cfg), train(small, cfg)
    assert a.content_hash == b.content_hash
    assert {r["C"] for r in a.report["cv_scores"]} == {4.0, 16.0}
    assert "lco" not in a.report and a.report["penalty"] == "l1"


def test_training_needs_both_classes(users):
    negatives = [u for u in users if u.label == 0][:20]
    with pytest.raises(ValueError, match="both"):
        train(negatives)


def test_bundled_model_top_positive_terms_are_not_community_artefacts(bundled_model, docs):
    """For each of the 50 strongest positive terms, count its occurrences in the
    training posts per community, independently of the training code: none may
    draw most of them from one control community."""
    terms = [t for t, _w in top_terms(bundled_model, 50)]
    assert len(terms) == 50
    wanted = set(terms)
    per: dict[str, Counter] = defaultdict(Counter)
    tok = bundled_model.tokenizer
    for d in docs:
        for t in tok.tokens(d.writings[0]):
            if t in wanted:
                per[t][d.community] += 1
    controls = {d.community for d in docs if d.label == 0}
    offenders = []
    for t in terms:
        total = sum(per[t].values())
        assert total > 0, t
        community, n = max(((c, n) for c, n in per[t].items() if c in controls),
                           key=lambda cn: cn[1], default=("", 0))
        if n / total > 0.5:
            offenders.append((t, community, n / total))
        # the stored concentration is the same figure
        stored = bundled_model.report["term_concentration"][t]
        assert stored["occurrences"] == total
        assert stored["top_control_share"] == pytest.approx(n / total, abs=1e-6)
    assert offenders == []
    assert artefacts(bundled_model) == []


def test_bundled_model_is_the_documented_recipe(bundled_model):
    r = bundled_model.report
    assert r["validation"] == "lco" and r["n_users"] == 7020
    assert r["penalty"] in ("l1", "l2")
    # clearly better than chance on every held-out community
    assert min(v["auc"] for v in r["lco"]["per_community"].values()) > 0.6
    # a writing without any weighted word no longer gets one fixed probability
    p = bundled_model.predict_documents([
        "Honestly I have been sleeping badly for weeks and I feel tired all the time",
        "Went to the farmers market this morning"])
    assert p[0] > p[1]


def test_model_show_prints_the_card(capsys, bundled_model):
    assert main(["model", "show"]) == 0
    out = capsys.readouterr().out
    assert bundled_model.version in out
    assert f"{bundled_model.n_nonzero:,} non-zero weights" in out
    top = top_terms(bundled_model, 1)[0][0]
    assert top in out and "held-out community" in out
    assert "artefact check: none of the top 50" in out
    md = model_card(bundled_model, markdown=True)
    assert md.startswith("# Model card: ") and "| held-out community |" in md


def test_model_show_bad_model(capsys, tmp_path):
    assert main(["model", "show", "--model", str(tmp_path)]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_train_erisk_fixture(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "--format", "erisk", "--input", str(ERISK_MINI), "--truth",
                 str(ERISK_MINI_TRUTH), "--folds", "2", "--c-grid", "1,10", "--min-df", "1",
                 "--out", str(out)]) == 0
    m = PortableModel.load(out)
    assert m.report["validation"] == "kfold" and m.report["n_users"] == 4
    assert m.report["unit"].startswith("user")
    assert "model " in capsys.readouterr().out


@pytest.mark.slow
def test_train_then_evaluate_erisk_layout(tmp_path, capsys):
    """The two commands of docs/EVALUATION.md on eRisk-layout copies of the simulated splits."""
    dirs = {}
    for split in ("train", "test"):
        truth = read_truth(SIMULATED / f"{split}-truth.txt")
        streams = read_wire_streams(SIMULATED / f"{split}.jsonl.gz").users
        dirs[split] = (tmp_path / split, write_erisk(streams, truth, tmp_path / split))
    model_dir = tmp_path / "model"
    assert main(["train", "--format", "erisk", "--input", str(dirs["train"][0]), "--truth",
                 str(dirs["train"][1]), "--out", str(model_dir)]) == 0
    # the same users in JSONL give the same model
    assert main(["train", "--format", "jsonl", "--input", str(SIMULATED / "train.jsonl.gz"),
                 "--truth", str(SIMULATED / "train-truth.txt"),
                 "--out", str(tmp_path / "m2")]) == 0
    a, b = PortableModel.load(model_dir), PortableModel.load(tmp_path / "m2")
    assert np.array_equal(a.coef, b.coef) and a.vocabulary == b.vocabulary
    capsys.readouterr()
    assert main(["evaluate", "--format", "erisk", "--input", str(dirs["test"][0]), "--truth",
                 str(dirs["test"][1]), "--model", str(model_dir), "--no-plots",
                 "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    assert "Incremental 0.5" in capsys.readouterr().out


def test_train_csv_with_column_mapping(tmp_path, users):
    path = tmp_path / "w.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["who", "when", "post", "y"])
        for u in users[:40]:
            for i, text in enumerate(u.writings[:5]):
                w.writerow([u.user, f"2019/01/{i + 1:02d}", text, u.label])
    out = tmp_path / "m"
    assert main(["train", "--format", "csv", "--input", str(path), "--csv-columns",
                 "author=who,time=when,text=post,label=y", "--folds", "3", "--c-grid", "4",
                 "--out", str(out)]) == 0
    r = PortableModel.load(out).report
    assert r["n_users"] == 40 and r["n_writings"] == 200


@pytest.mark.slow
def test_train_cli_reproduces_bundled_model(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "bundled model    identical" in out
    assert PortableModel.load(tmp_path / "m").content_hash == PortableModel.load().content_hash


def test_train_cli_bad_arguments(capsys):
    assert main(["train", "--format", "jsonl", "--input", "/nonexistent.jsonl",
                 "--truth", str(SIMULATED / "train-truth.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--c-grid", "a,b"]) == 2
    assert main(["train", "--penalties", "l3"]) == 2
    assert main(["train", "--format", "erisk", "--input", str(ERISK_MINI)]) == 2
    assert "needs --truth" in capsys.readouterr().err
    assert main(["train", "--truth", str(ERISK_MINI_TRUTH)]) == 2
    assert main(["train", "--format", "erisk", "--input", str(ERISK_MINI_TRUTH),
                 "--truth", str(ERISK_MINI_TRUTH)]) == 2
