"""``earlyrisk evaluate`` end to end, and its figures recomputed from its CSVs.

The recomputation below is written independently of models/metrics.py,
straight from the published formulas, so a slip in either shows up.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from pipelines.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def _recompute(decisions_csv: Path) -> dict[str, dict[str, float]]:
    by_method: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    with open(decisions_csv, newline="") as f:
        for r in csv.DictReader(f):
            by_method[r["method"]].append(
                (int(r["decision"]), int(r["writings_seen"]), int(r["truth"])))
    out = {}
    for method, rows in by_method.items():
        tp = sum(1 for d, _, t in rows if d and t)
        fp = sum(1 for d, _, t in rows if d and not t)
        fn = sum(1 for d, _, t in rows if not d and t)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        cfp = sum(t for *_, t in rows) / len(rows)
        res = {"precision": p, "recall": r, "f1": f1}
        for o in (5, 50):
            cost = 0.0
            for d, k, t in rows:
                if d and t:
                    cost += 1 - 1 / (1 + math.exp(k - o))
                elif d:
                    cost += cfp
                elif t:
                    cost += 1
            res[f"erde{o}"] = cost / len(rows)
        pens = [-1 + 2 / (1 + math.exp(-0.0078 * (k - 1))) for d, k, t in rows if d and t]
        res["f_latency"] = f1 * (1 - statistics.median(pens)) if pens else 0.0
        out[method] = res
    return out


def _recompute_ranking(rankings_csv: Path) -> dict[str, dict[str, float]]:
    rounds: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    with open(rankings_csv, newline="") as f:
        for r in csv.DictReader(f):
            rounds[r["round"]].append((float(r["score"]), r["user"], int(r["truth"])))
    out = {}
    for rnd, rows in rounds.items():
        rel = [t for _, _, t in sorted(rows, key=lambda x: (-x[0], x[1]))]

        def dcg(rs, k):
            return sum(x / (1 if i == 1 else math.log2(i)) for i, x in enumerate(rs[:k], 1))

        ideal = sorted(rel, reverse=True)
        out[rnd] = {"p@10": sum(rel[:10]) / 10,
                    "ndcg@10": dcg(rel, 10) / dcg(ideal, 10) if dcg(ideal, 10) else 0.0,
                    "ndcg@100": dcg(rel, 100) / dcg(ideal, 100) if dcg(ideal, 100) else 0.0}
    return out


def _check_outputs(out: Path) -> dict:
    for name in ("metrics.json", "decisions.csv", "rankings.csv", "f1_erde.png",
                 "probability_curves.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "f1_erde.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "metrics.json").read_text())
    again = _recompute(out / "decisions.csv")
    assert set(again) == set(doc["methods"])
    for method, figures in again.items():
        for key, value in figures.items():
            assert doc["methods"][method][key] == pytest.approx(value, abs=1e-12), (method, key)
    ranking = _recompute_ranking(out / "rankings.csv")
    for rnd, figures in ranking.items():
        for key, value in figures.items():
            assert doc["ranking"][rnd][key] == pytest.approx(value, abs=1e-12), (rnd, key)
    return doc


@pytest.mark.slow
def test_evaluate_bundled_simulated_test_split(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "ERDE5" in printed and "Incremental 0.5" in printed and "F_latency" in printed
    doc = _check_outputs(tmp_path)
    assert doc["info"]["users"] == 153 and doc["info"]["positive_users"] == 28
    m = doc["methods"]
    assert m["Depressed"]["recall"] == 1.0
    assert m["Depressed"]["precision"] == pytest.approx(28 / 153)


def test_evaluate_erisk_fixture(tmp_path, capsys):
    rc = main(["evaluate", "--format", "erisk", "--input", str(FIXTURES / "erisk-mini"),
               "--truth", str(FIXTURES / "erisk-mini-truth.txt"), "--out", str(tmp_path),
               "--methods", "random,depressed,first:1,all,incremental:0.5,window",
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "skipped writings: empty_text 1" in printed
    doc = _check_outputs(tmp_path)
    assert doc["info"]["users"] == 4 and doc["info"]["writings"] == 9


def test_evaluate_csv(tmp_path, capsys):
    p = tmp_path / "in.csv"
    rows = ["user,date,post,y"]
    for i in range(3):
        rows.append(f"sad{i},2019/01/0{i + 1},I feel hopeless and depressed and alone,1")
        rows.append(f"sad{i},2019/01/0{i + 2},I cry every night and want to die,1")
        rows.append(f"ok{i},2019/01/0{i + 1},what rifle scope for deer season,0")
    p.write_text("\n".join(rows) + "\n")
    rc = main(["evaluate", "--format", "csv", "--input", str(p), "--csv-columns",
               "author=user,time=date,text=post,label=y", "--out", str(tmp_path / "o"),
               "--no-plots", "--no-progress", "--methods", "all,incremental:0.5"])
    assert rc == 0
    assert "Incremental 0.5" in capsys.readouterr().out
    assert len((tmp_path / "o" / "decisions.csv").read_text().splitlines()) == 1 + 2 * 6


@pytest.mark.parametrize("argv, reason", [
    (["--methods", "nope"], "unknown method"),
    (["--input", "/nonexistent"], "does not exist"),
    (["--format", "erisk"], "collection directory"),
    (["--erde", "x"], "--erde"),
    (["--format", "erisk", "--input", str(FIXTURES / "erisk-mini"),
      "--truth", str(FIXTURES / "erisk-mini-truth.txt"), "--model", "/nonexistent"], "--model"),
    (["--format", "erisk", "--input", str(FIXTURES / "erisk-mini")], "no golden truth"),
])
def test_evaluate_bad_arguments_exit_2(argv, reason, tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1, err
