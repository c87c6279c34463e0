"""earlyrisk bench: every section runs at tiny sizes and reports the figures it promises.

No timing assertions: the figures vary with the machine; what is checked is
that each measurement ran on what it says (counts add up, the baseline is the
same model) and that the results have the structure docs/PERFORMANCE.md and
the table read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import corpus, latency, pipeline, scale, scorer, state
from bench.run import machine, table, targets
from models.scorer import IncrementalScorer, UserState
from pipelines.cli import main


def test_corpus_kinds_and_stream(tmp_path: Path) -> None:
    comments, posts = corpus.texts("comments", 200), corpus.texts("posts", 200)
    assert sum(map(len, comments)) < sum(map(len, posts)) / 2  # comments are short
    path = corpus.synthetic_stream(tmp_path / "s.jsonl.gz", 300, 7)
    from corpora.readers import read_wire_streams

    streams = read_wire_streams(path)
    assert sum(map(len, streams.users.values())) == 300 and len(streams.users) <= 7
    with pytest.raises(ValueError):
        corpus.texts("tweets", 1)


def test_paper_baseline_gives_the_same_probability(bundled_model) -> None:
    # The baseline must be the same model, or the speed-up compares two things.
    paper = scorer.PaperScorer(bundled_model)
    inc = IncrementalScorer(bundled_model)
    acc, st = paper.new_user(), UserState()
    for text in corpus.texts("mix", 15):
        acc, p = paper.update(acc, text)
        assert abs(inc.update(st, text).p_user - p) < 1e-9


def test_scorer_section(bundled_model) -> None:
    t = scorer.throughput(IncrementalScorer(bundled_model), corpus.texts("comments", 300))
    assert t["submissions"] == 300 and t["per_s"] > 0
    h = scorer.cost_by_history(bundled_model, "comments", (2, 5), users=1, probes=3,
                               baseline_probes=2)
    assert set(h["incremental_us"]) == set(h["paper_us"]) == set(h["speedup"]) == {2, 5}


def test_feature_model_holds_every_feature_term(bundled_model) -> None:
    fm = scorer.feature_model(bundled_model)
    vocab = set(fm.vocabulary)
    assert set(bundled_model.vocabulary) < vocab
    assert {"neg:tired", "__lex_srl_hopelessness", "neg:__lex_srl_hopelessness",
            "__fp_sing", "__lex_vader_neg", "__lex_empath_sadness"} <= vocab
    sc = IncrementalScorer(fm)
    t = scorer.throughput(sc, corpus.texts("mix", 200))
    assert t["per_s"] > 0
    # the features fire on the benchmark's texts
    st = UserState()
    for text in corpus.texts("mix", 200):
        sc.update(st, text)
    fired = {fm.vocabulary[i] for i in st.counts}
    assert any(t.startswith("neg:") for t in fired) and "__fp_sing" in fired


def test_sample_feature_model_is_shaped_like_a_trained_one() -> None:
    from models.tokenize import Tokenizer

    small = scorer.sample_feature_model(Tokenizer(version=2, negation_window=3,
                                                  lexicons=("pronouns",)), min_df=50)
    vocab = set(small.vocabulary)
    assert "__fp_sing" in vocab and "neg:the" in vocab and "i" in vocab
    assert not any(t.startswith("__lex_") for t in vocab)


def test_state_pipeline_and_scale_sections() -> None:
    st = state.run(quick=True)
    assert st["users"] > 100 and 0 < st["bytes_median"] <= st["bytes_p99"]
    pl = pipeline.run(n_submissions=300, n_users=30, repeat=1)
    assert pl["submissions"] == 300 and pl["share_of_ceiling"] > 0
    sc = scale.run(sizes=[(400, 40)], pipeline_sizes=[(300, 30)], slice_size=100)
    assert sc["core"][0]["scored"] == 400 and sc["core"][0]["users"] <= 40
    assert sc["pipeline"][0]["scored"] == 300 and sc["pipeline"][0]["balanced"]
    # Three pipeline runs, the state carried between them: each user counted once.
    assert sc["pipeline"][0]["slices"] == 3 and sc["pipeline"][0]["users"] <= 30
    assert all(s["peak_rss_mib"] > 0 for s in sc["core"] + sc["pipeline"])
    r = {"machine": machine(), "state": st, "pipeline": pl, "scale": sc}
    r["targets"] = targets(r)
    assert {t["target"] for t in r["targets"]} >= {"pipeline submissions/s",
                                                   "state bytes per term (median user)"}
    assert "share of ceiling" in table(r)
    json.dumps(r)


def test_cli_writes_results(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert main(["bench", "--quick", "--only", "state", "--results", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["quick"] and data["sections"] == ["state"] and data["machine"]["cpus"] >= 1
    assert "bytes/term" in capsys.readouterr().out


def test_cli_rejects_unknown_section(capsys) -> None:
    assert main(["bench", "--only", "scorer,nope"]) == 2
    assert "unknown section nope" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_latency_section_through_the_emulator() -> None:
    r = latency.run(rate=20, duration_s=3)
    if "skipped" in r:
        pytest.skip(r["skipped"])
    assert r["published"] == 60 and r["received"] + r["missing"] == 60
    assert r["received"] > 0 and r["p50_s"] <= r["p99_s"] <= r["max_s"]


def test_flink_section_is_skipped_with_the_reason_without_its_venv(tmp_path, monkeypatch) -> None:
    from bench import flink

    monkeypatch.setattr(flink, "FLINK_VENV", tmp_path / "no-venv")
    r = flink.run(quick=True)
    assert "make flink" in r["skipped"]
    assert flink.lines(r) == ["== flink", f"skipped: {r['skipped']}"]
