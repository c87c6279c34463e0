"""``earlyrisk bench``: run every benchmark, print a table, write results.json.

Sections: scorer (incremental vs the paper's method), pipeline (earlyrisk run
vs an empty stateful DoFn), flink (the native Flink job beside the Beam job,
and its start cost; skipped without .venv-flink), state (bytes per user and per term), latency
(through the Pub/Sub emulator), scale (1M submissions / 100k users) and
training. ``--quick`` uses small sizes (a minute or two, for CI); the full
run takes several minutes and is what docs/PERFORMANCE.md records.
Targets are checked and reported as met or not; nothing fails on timing.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

# In the working directory, never over the committed record (bench/results.json,
# updated on purpose with --results bench/results.json).
DEFAULT_RESULTS = Path("earlyrisk-bench.json")
SECTIONS = ("scorer", "state", "pipeline", "flink", "latency", "scale", "training")


def machine() -> dict:
    """What the figures were measured on."""
    import apache_beam
    import numpy
    import sklearn

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "beam": apache_beam.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def targets(r: dict) -> list[dict]:
    """Each target of issue 8 with the measured figure and whether it is met."""
    out = []

    def add(name: str, figure, goal: str, met: bool | None) -> None:
        out.append({"target": name, "figure": figure, "goal": goal, "met": met})

    sc = r.get("scorer")
    if sc:
        for kind, t in sc["throughput"].items():
            add(f"scorer submissions/s, one core ({kind})", t["per_s"], ">= 50,000",
                t["per_s"] >= 50_000)
        mix = sc.get("features_throughput", {}).get("mix")
        if mix:
            add("scorer submissions/s, one core (mix, tokenizer v2 features)", mix["per_s"],
                ">= 50,000", mix["per_s"] >= 50_000)
        for kind, h in sc["by_history"].items():
            add(f"scorer cost growth, last vs first history ({kind})",
                h["growth_last_vs_first"], "<= 1.5", h["growth_last_vs_first"] <= 1.5)
            s500 = h["speedup"].get(500, h["speedup"].get("500"))
            if s500 is not None:
                add(f"speed-up vs paper's method at 500 writings ({kind})", s500, ">= 50",
                    s500 >= 50)
    pl = r.get("pipeline")
    if pl:
        add("pipeline share of Beam ceiling", pl["share_of_ceiling"], ">= 0.60",
            pl["share_of_ceiling"] >= 0.6)
        add("pipeline submissions/s", pl["earlyrisk_per_s"], ">= 5,000",
            pl["earlyrisk_per_s"] >= 5_000)
    sl = r.get("scale")
    if sl:
        by_n = {s["submissions"]: s for s in sl.get("pipeline", [])}
        if 1_000_000 in by_n and 5_000_000 in by_n:
            ratio = round(by_n[5_000_000]["peak_rss_mib"] / by_n[1_000_000]["peak_rss_mib"], 2)
            add("pipeline peak RSS, 5M vs 1M submissions", ratio, "< 1.5", ratio < 1.5)
    st = r.get("state")
    if st:
        add("state bytes per term (median user)", st["bytes_per_term_median"], "<= 8",
            st["bytes_per_term_median"] <= 8)
    lat = r.get("latency")
    if lat and "p99_s" in lat:
        add(f"latency p99 publish -> score row at {lat['rate']} msg/s", lat["p99_s"], "<= 2 s",
            lat["p99_s"] <= 2 and lat["missing"] == 0)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(r: dict) -> str:
    lines = []
    sc = r.get("scorer")
    if sc:
        path = "compiled loop" if sc.get("compiled") else "pure Python"
        lines.append(f"== scorer (CPU time, one core, {path})")
        lines.append(f"{'texts':<24}{'mean chars':>12}{'subs/s':>12}{'us/sub':>10}")
        rows = list(sc["throughput"].items())
        rows += [(f"{k} (pure Python)", t) for k, t in sc.get("python_throughput", {}).items()]
        rows += [(f"{k} (v2 features)", t)
                 for k, t in sc.get("features_throughput", {}).items()]
        rows += [(f"{k} (v2 worst case)", t) for k, t in sc.get("features_worst", {}).items()]
        for kind, t in rows:
            lines.append(f"{kind:<24}{_fmt(t['mean_chars']):>12}{_fmt(t['per_s']):>12}"
                         f"{_fmt(t['us_per_submission']):>10}")
        lines.append(f"{'texts':<10}{'history':>8}{'incr. us':>12}{'paper us':>12}"
                     f"{'speed-up':>10}")
        for kind, h in sc["by_history"].items():
            for hist, us in h["incremental_us"].items():
                base = h["paper_us"].get(hist)
                sp = h["speedup"].get(hist)
                lines.append(f"{kind:<10}{hist:>8}{_fmt(us):>12}"
                             f"{_fmt(base) if base else '-':>12}{_fmt(sp) if sp else '-':>10}")
    st = r.get("state")
    if st:
        lines.append("== state (encoded per-user state, simulated users)")
        lines.append(f"users {st['users']:,}; bytes median {st['bytes_median']:,}, p99 "
                     f"{st['bytes_p99']:,}; terms median {st['terms_median']:,}; bytes/term "
                     f"median {st['bytes_per_term_median']} (counts only "
                     f"{st['count_bytes_per_term_median']})")
    pl = r.get("pipeline")
    if pl:
        lines.append(f"== pipeline ({pl['runner']}, {pl['submissions']:,} {pl['kind']} "
                     f"submissions, {pl['users']:,} users)")
        lines.append(f"ceiling (empty stateful DoFn)  {pl['ceiling_per_s']:>8,} subs/s  "
                     f"wall {pl['ceiling_wall_s']} s  cpu {pl['ceiling_cpu_s']} s")
        lines.append(f"earlyrisk run                  {pl['earlyrisk_per_s']:>8,} subs/s  "
                     f"wall {pl['earlyrisk_wall_s']} s  cpu {pl['earlyrisk_cpu_s']} s")
        lines.append(f"share of ceiling               {pl['share_of_ceiling']:.0%}")
    fl = r.get("flink")
    if fl:
        from bench.flink import lines as flink_lines

        lines += flink_lines(fl)
    lat = r.get("latency")
    if lat:
        lines.append("== latency (Pub/Sub emulator -> score row)")
        if "skipped" in lat:
            lines.append(f"skipped: {lat['skipped']}")
        else:
            lines.append(f"{lat['rate']} msg/s for {lat['duration_s']} s "
                         f"(achieved {lat['publish_rate_achieved']}/s): {lat['received']:,}"
                         f"/{lat['published']:,} scored; p50 {lat['p50_s']} s, p99 "
                         f"{lat['p99_s']} s, max {lat['max_s']} s")
    sl = r.get("scale")
    if sl:
        lines.append("== scale (fresh process per size)")
        for mode in ("core", "pipeline"):
            for s in sl.get(mode, []):
                lines.append(f"{mode:<9}{s['submissions']:>10,} subs {s['users']:>8,} users  "
                             f"{s['per_s']:>8,} subs/s  {s['us_per_submission']:>7} us/sub  "
                             f"peak RSS {s['peak_rss_mib']:,} MiB"
                             + (f"  {s['slices']} slices" if s.get("slices", 1) > 1 else ""))
    tr = r.get("training")
    if tr:
        lines.append(f"== training (earlyrisk train, bundled real posts, {tr['arguments']})")
        lines.append(f"wall {tr['wall_s']} s, cpu {tr['cpu_s']} s, peak RSS "
                     f"{tr['peak_rss_mib']:,} MiB, identical to bundled model: "
                     f"{tr['identical_to_bundled']}")
    ts = r.get("targets")
    if ts:
        lines.append("== targets")
        for t in ts:
            mark = "met" if t["met"] else "NOT met"
            lines.append(f"{mark:<8}{t['target']}: {_fmt(t['figure'])} (goal {t['goal']})")
    return "\n".join(lines)


def run(quick: bool = False, sections: tuple[str, ...] = SECTIONS,
        results: Path | None = DEFAULT_RESULTS, say: Callable[[str], None] | None = None,
        keep_other_sections: bool = False) -> dict:
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    from bench import flink, latency, pipeline, scale, scorer, state

    r: dict = {"quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), "sections": list(sections)}
    steps = {
        "scorer": lambda: scorer.run(quick),
        "state": lambda: state.run(quick),
        "pipeline": lambda: pipeline.run(quick),
        "flink": lambda: flink.run(quick),
        "latency": lambda: latency.run(quick, say=say),
        "scale": lambda: scale.run(quick, say=say),
        "training": lambda: scale.training(quick),
    }
    for name in sections:
        say(f"bench: {name} ...")
        t0 = time.perf_counter()
        r[name] = steps[name]()
        r.setdefault("section_wall_s", {})[name] = round(time.perf_counter() - t0, 1)
        r.setdefault("section_measured_at", {})[name] = r["started"]
    if results is not None and keep_other_sections and results.exists():
        # Sections not run now keep their earlier figures (each says when it ran).
        try:
            before = json.loads(results.read_text(encoding="utf-8"))
        except ValueError:
            before = {}
        if before.get("quick") == quick:
            for name in SECTIONS:
                if name not in sections and name in before:
                    r[name] = before[name]
                    r.setdefault("section_wall_s", {})[name] = \
                        before.get("section_wall_s", {}).get(name)
                    r.setdefault("section_measured_at", {})[name] = \
                        before.get("section_measured_at", {}).get(name, before.get("started"))
    r["sections"] = [name for name in SECTIONS if name in r]
    r["targets"] = targets(r)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return r
