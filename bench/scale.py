"""Scale and training benchmarks, each size in a fresh process (see bench.child).

Scale: a synthetic replay (bench.corpus.synthetic_stream, written lazily to a
temporary file) at growing sizes with ten submissions per user, through

* ``core``: the incremental scorer with every user's state in a dict (no Beam):
  throughput, peak RSS, encoded state bytes;
* ``pipeline``: ``earlyrisk run`` on the FnApiRunner into DuckDB, in slices
  of ``--slice-size`` submissions with the per-user state carried in the store
  (the default for bounded inputs), so peak memory should not grow with the
  input: the 5M run must peak under 1.5 times the 1M run.

Linearity shows as constant per-submission time across sizes. Training:
``earlyrisk train`` on the bundled simulated train split.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import corpus

ROOT = Path(__file__).resolve().parent.parent


def _child(job: str, *args: str, timeout: float = 3600) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    proc = subprocess.run([sys.executable, "-m", "bench.child", job, out, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {job} failed: {proc.stderr.strip()[-2000:]}")
    data = json.loads(Path(out).read_text(encoding="utf-8"))
    Path(out).unlink()
    return data


def run(quick: bool = False, sizes: list[tuple[int, int]] | None = None,
        pipeline_sizes: list[tuple[int, int]] | None = None, say=lambda _m: None,
        slice_size: int | None = None) -> dict:
    """Scale figures: ``sizes`` for the core, ``pipeline_sizes`` for earlyrisk run.

    ``slice_size``: earlyrisk run's ``--slice-size`` (default: its own; 2,500 when quick).
    """
    sizes = sizes if sizes is not None else ([(5_000, 500), (20_000, 2_000)] if quick
                      else [(100_000, 10_000), (1_000_000, 100_000)])
    pipeline_sizes = pipeline_sizes if pipeline_sizes is not None else ([(5_000, 500)] if quick
                                        else [(100_000, 10_000), (1_000_000, 100_000),
                                              (5_000_000, 500_000)])
    # Quick: small slices, so that CI runs the sliced path too.
    if slice_size is None and quick:
        slice_size = 2_500
    slice_args = ["--slice-size", str(slice_size)] if slice_size else []
    out: dict = {"core": [], "pipeline": []}
    with tempfile.TemporaryDirectory(prefix="earlyrisk-scale-") as tmp:
        for n, users in sorted(set(sizes) | set(pipeline_sizes)):
            path = corpus.synthetic_stream(Path(tmp) / f"s{n}.jsonl", n, users)
            if (n, users) in sizes:
                say(f"scale: core replay of {n:,} submissions / {users:,} users")
                r = _child("core", str(path))
                # Parse, dedupe and score, CPU time, model loading excluded.
                r.update(submissions=n, per_s=round(n / r["replay_cpu_s"]),
                         us_per_submission=round(r["replay_cpu_s"] / n * 1e6, 2),
                         state_bytes_per_user=round(r["state_bytes_encoded"] / r["users"], 1))
                out["core"].append(r)
            if (n, users) in pipeline_sizes:
                say(f"scale: earlyrisk run on {n:,} submissions / {users:,} users")
                db = Path(tmp) / f"s{n}.duckdb"
                r = _child("pipeline", str(path), str(db), *slice_args, timeout=4 * 3600)
                db.unlink(missing_ok=True)
                r.update(submissions=n, per_s=round(n / r["wall_s"]),
                         us_per_submission=round(r["wall_s"] / n * 1e6, 2))
                out["pipeline"].append(r)
            path.unlink()
    return out


def training(quick: bool = False) -> dict:
    """``earlyrisk train`` with its defaults (quick: 2 folds, one C, not comparable)."""
    extra = ["--folds", "2", "--c-grid", "1"] if quick else []
    with tempfile.TemporaryDirectory(prefix="earlyrisk-train-") as tmp:
        r = _child("train", str(Path(tmp) / "model"), *extra)
    lines = r.pop("output")
    r["arguments"] = " ".join(extra) or "defaults"
    r["identical_to_bundled"] = any(line.startswith("bundled model") and "identical" in line
                                    for line in lines)
    return r
