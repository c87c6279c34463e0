"""Runs one measured job in a fresh process and reports its own resource use.

Peak resident memory is a per-process high-water mark, so each size of the
scale benchmark and the training run get a process of their own:

    python -m bench.child JOB RESULT.json [ARGS...]

JOB is ``train`` (``earlyrisk train``), ``pipeline`` (``earlyrisk run`` on a
file) or ``core`` (the incremental scorer over a file, every user's state held
in a dict, no Beam). RESULT.json gets wall and CPU seconds, peak RSS (MiB) and
the job's own figures.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _core(path: str) -> dict:
    from corpora.readers import iter_lines
    from models.portable import PortableModel
    from models.scorer import IncrementalScorer, UserState
    from models.wire import Pseudonymizer, parse_submission

    scorer = IncrementalScorer(PortableModel.load())
    raw = Pseudonymizer(None)
    states: dict[str, UserState] = {}
    n = 0
    c0 = time.process_time()
    for _, line in iter_lines(path):
        sub = parse_submission(line, raw, now=float("inf"))
        st = states.get(sub.user_id)
        if st is None:
            st = states[sub.user_id] = UserState()
        st.remember(sub.id)
        scorer.update(st, sub.text, sub.created_utc)
        n += 1
    replay_cpu = time.process_time() - c0
    encoded = sum(len(s.to_bytes()) for s in states.values())
    return {"scored": n, "users": len(states), "state_bytes_encoded": encoded,
            "replay_cpu_s": round(replay_cpu, 2)}


def _pipeline(path: str, out: str, *extra: str) -> dict:
    from pipelines.screening import run

    s = run(["--input", f"file://{path}", "--output", f"duckdb://{out}", "--raw-user-ids",
             "--runner", "direct", *extra], show_progress=False)
    return {"scored": s.scored, "users": s.users, "balanced": s.balanced,
            "slices": s.slices}


def _train(out: str, *extra: str) -> dict:
    import contextlib
    import io

    from pipelines.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = main(["train", "--out", out, *extra])
    return {"exit": code, "output": buf.getvalue().strip().splitlines()}


def _peak_tree_rss_mib() -> dict:
    """Peak resident memory of this process and of any child process it waited for.

    ``RUSAGE_CHILDREN`` is the largest such descendant's peak; with children
    running one at a time, this process's peak plus theirs bounds the peak of
    the whole process tree from above (``peak_rss_mib``). The job runs in
    process today (children: 0 MiB); if it ever starts helper processes, the
    figure still counts them.
    """
    own = _peak_rss_mib()
    children = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    return {"peak_rss_mib": round(own + children, 1), "peak_rss_own_mib": own,
            "peak_rss_largest_child_mib": children}


def _peak_rss_mib() -> float:
    # VmHWM is this process's own high-water mark. getrusage's ru_maxrss is
    # not: Linux carries it over fork and exec, so a child would report its
    # parent's peak whenever that was higher.
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str]) -> int:
    job, result_path, *args = argv
    jobs = {"core": _core, "pipeline": _pipeline, "train": _train}
    if job not in jobs:
        print(f"unknown job {job!r}", file=sys.stderr)
        return 2
    w0, c0 = time.perf_counter(), time.process_time()
    figures = jobs[job](*args)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += children.ru_utime + children.ru_stime  # child processes' CPU time too
    figures.update(wall_s=round(wall, 2), cpu_s=round(cpu, 2), **_peak_tree_rss_mib())
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(figures, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
