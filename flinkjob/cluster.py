"""A standalone Flink cluster made from the PyFlink wheel, for the Flink job.

The ``apache-flink`` wheel is a whole Flink distribution. :func:`make_home`
turns it into a FLINK_HOME that ``bin/start-cluster.sh`` can run: hard links
(or copies) of its ``bin``, ``conf``, ``lib``, ``opt`` and ``plugins`` (symlinks
would make the scripts resolve back into the wheel), ``flink-python`` moved into
``lib/`` (thread mode needs it there), and a ``conf/config.yaml`` with the
ports chosen by the caller, ``python.pythonpath`` pointing at the venv's
packages, and pid/log folders inside the home. Nothing here imports PyFlink.

Command line (run with the Flink venv's Python or any Python 3.11)::

    python -m flinkjob.cluster start --home flink-cluster --rest-port 8081
    python -m flinkjob.cluster stop --home flink-cluster

``start`` prints the REST address; ``stop`` stops the JobManager and every
TaskManager of that home by the PIDs the start scripts recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-flink"
FLINK_VERSION = "2.3.0"


def pyflink_dir(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages/pyflink"))
    if not found:
        raise FileNotFoundError(f"no PyFlink in {venv} (run 'make flink')")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir():
            _link_tree(item, target)
        elif not target.exists():
            try:
                os.link(item, target)
            except OSError:
                shutil.copy2(item, target)


def make_home(home: Path, rest_port: int, venv: Path = DEFAULT_VENV, slots: int = 2,
              extra_conf: dict[str, str] | None = None) -> Path:
    """A FLINK_HOME at ``home`` with every port chosen (none of Flink's defaults).

    ``rest_port`` is the REST/web port, the JobManager's RPC port is picked
    free, and every other port is left to the OS. Returns ``home``.
    """
    pyflink = pyflink_dir(venv)
    home = home.resolve()
    for part in ("bin", "conf", "lib", "opt", "plugins"):
        if (pyflink / part).is_dir():
            _link_tree(pyflink / part, home / part)
    (home / "plugins").mkdir(exist_ok=True)
    jar = f"flink-python-{FLINK_VERSION}.jar"
    if not (home / "lib" / jar).exists():
        shutil.copy2(home / "opt" / jar, home / "lib" / jar)
    for d in ("log", "pids", "tmp"):
        (home / d).mkdir(exist_ok=True)
    site = pyflink.parent
    python = venv.resolve() / "bin" / "python"
    conf = {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.bind-host": "localhost",
        "jobmanager.rpc.port": str(free_port()),
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.host": "localhost",
        "taskmanager.bind-host": "localhost",
        # 0: the OS picks (TaskManager RPC/data, blob server, metrics query
        # service): no race with other programs, no clash between JM and TM.
        "taskmanager.rpc.port": "0",
        "taskmanager.data.port": "0",
        "taskmanager.numberOfTaskSlots": str(slots),
        "taskmanager.memory.process.size": "1536m",
        "blob.server.port": "0",
        "metrics.internal.query-service.port": "0",
        "rest.address": "localhost",
        "rest.bind-address": "localhost",
        "rest.port": str(rest_port),
        "parallelism.default": "1",
        "metrics.fetcher.update-interval": "1000",  # REST job metrics refresh (ms)
        "io.tmp.dirs": str(home / "tmp"),
        "python.execution-mode": "thread",
        "python.executable": str(python),
        "python.client.executable": str(python),
        "python.pythonpath": str(site),
        "env.pid.dir": str(home / "pids"),
        "env.log.dir": str(home / "log"),
    }
    conf.update(extra_conf or {})
    java_opts = _java_opts(pyflink / "conf" / "config.yaml")
    lines = ["# Written by flinkjob.cluster.make_home (flat keys; Flink 2 reads them)."]
    if java_opts:
        lines.append(f"env.java.opts.all: {java_opts}")
    lines += [f"{k}: {v}" for k, v in conf.items()]
    (home / "conf" / "config.yaml").unlink(missing_ok=True)  # a hard link into the wheel
    (home / "conf" / "config.yaml").write_text("\n".join(lines) + "\n")
    (home / "conf" / "workers").unlink(missing_ok=True)
    (home / "conf" / "workers").write_text("localhost\n")
    (home / "conf" / "masters").unlink(missing_ok=True)
    (home / "conf" / "masters").write_text(f"localhost:{rest_port}\n")
    return home


def _java_opts(config: Path) -> str:
    """The wheel's JVM options (--add-opens ...), which Flink on Java 17 needs."""
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "all:" or line.strip().startswith("all: "):
            value = line.split(":", 1)[1].strip()
            if value:
                return value
            return lines[i + 1].strip() if i + 1 < len(lines) else ""
    return ""


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FLINK_HOME=str(home), FLINK_CONF_DIR=str(home / "conf"),
               FLINK_PID_DIR=str(home / "pids"), FLINK_LOG_DIR=str(home / "log"))
    env.pop("PYFLINK_GATEWAY_PORT", None)
    return env


def rest_url(home: Path) -> str:
    for line in (home / "conf" / "config.yaml").read_text().splitlines():
        if line.startswith("rest.port:"):
            return f"http://localhost:{line.split(':', 1)[1].strip()}"
    raise ValueError(f"no rest.port in {home}/conf/config.yaml")


def rest(home: Path, path: str, body: dict | None = None, timeout: float = 10.0):
    """GET (or POST ``body``) the cluster's REST API; the decoded JSON."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(rest_url(home) + path, data=data,
                                 headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def pids(home: Path) -> list[int]:
    """PIDs of this home's JobManager and TaskManagers (from the start scripts' files)."""
    out = []
    for f in sorted((home / "pids").glob("*.pid")):
        out += [int(p) for p in f.read_text().split() if p.strip().isdigit()]
    return out


def start(home: Path, timeout_s: float = 120.0) -> list[int]:
    """``bin/start-cluster.sh``, then wait until a TaskManager registered; the PIDs."""
    subprocess.run([str(home / "bin" / "start-cluster.sh")], env=_env(home), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if rest(home, "/overview", timeout=2).get("taskmanagers", 0) >= 1:
                return pids(home)
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            stop(home)
            logs = "; ".join(p.name for p in (home / "log").glob("*.log"))
            raise RuntimeError(f"Flink cluster did not come up within {timeout_s:.0f} s "
                               f"(logs in {home / 'log'}: {logs})")
        time.sleep(0.5)


def stop(home: Path, timeout_s: float = 30.0) -> None:
    """Stop every process of this home by PID: TERM, then KILL after ``timeout_s``."""
    running = [p for p in pids(home) if _alive(p)]
    for p in running:
        os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in running:
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for f in (home / "pids").glob("*.pid"):
        f.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def submit(home: Path, job_args: list[str], savepoint: str | None = None,
           venv: Path = DEFAULT_VENV) -> str:
    """``bin/flink run -py flinkjob/job.py`` (detached); the job id."""
    python = str(venv.resolve() / "bin" / "python")
    argv = [str(home / "bin" / "flink"), "run", "-m", rest_url(home).split("//")[1],
            "-pyclientexec", python, "-pyexec", python]
    if savepoint:
        argv += ["-s", savepoint]
    argv += ["-py", str(ROOT / "flinkjob" / "job.py"), "--no-wait", *job_args]
    env = _env(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("job id"):
            return line.split()[-1]
    raise RuntimeError(f"flink run failed ({out.returncode}): "
                       f"{(out.stdout + out.stderr)[-3000:]}")


def job_state(home: Path, job_id: str) -> str:
    return rest(home, f"/jobs/{job_id}")["state"]


def completed_checkpoints(home: Path, job_id: str) -> int:
    return rest(home, f"/jobs/{job_id}/checkpoints")["counts"]["completed"]


def vertex_metric(home: Path, job_id: str, vertex_name: str, metric: str) -> float:
    """A metric summed over a vertex's subtasks (e.g. ``numRecordsOut`` of ``Read``)."""
    for v in rest(home, f"/jobs/{job_id}")["vertices"]:
        if v["name"].startswith(vertex_name):
            got = rest(home, f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics"
                       f"?get={metric}&agg=sum")
            return float(got[0]["sum"]) if got else 0.0
    raise KeyError(f"no vertex named {vertex_name!r} in job {job_id}")


def stop_with_savepoint(home: Path, job_id: str, directory: str, drain: bool = False,
                        timeout_s: float = 180.0) -> str:
    """Stop the job with a savepoint into ``directory``; the savepoint's path.

    Through the REST API (PyFlink 2.3's ``JobClient.stop_with_savepoint`` is
    broken). ``drain`` advances event time to the end first, firing every timer
    (the job's end: users' state expires, sinks flush).
    """
    trigger = rest(home, f"/jobs/{job_id}/stop",
                   {"targetDirectory": directory, "drain": drain})["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest(home, f"/jobs/{job_id}/savepoints/{trigger}")
        if status["status"]["id"] == "COMPLETED":
            op = status["operation"]
            if "location" not in op:
                raise RuntimeError(f"savepoint failed: {json.dumps(op)[:2000]}")
            return op["location"]
        time.sleep(0.5)
    raise TimeoutError(f"savepoint of {job_id} not done in {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flinkjob.cluster",
                                description="Start or stop a standalone Flink cluster made "
                                            "from the PyFlink wheel in .venv-flink.")
    p.add_argument("action", choices=("start", "stop"))
    p.add_argument("--home", default="flink-cluster", help="FLINK_HOME to create/use")
    p.add_argument("--rest-port", type=int, default=None,
                   help="REST/web port (default: a free one)")
    p.add_argument("--slots", type=int, default=2, help="task slots (default 2)")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the Flink venv")
    args = p.parse_args(argv)
    home = Path(args.home).resolve()
    if args.action == "stop":
        if not (home / "pids").is_dir():
            print(f"no cluster at {home}", file=sys.stderr)
            return 2
        stop(home)
        print(f"stopped the cluster at {home}")
        return 0
    try:
        make_home(home, args.rest_port or free_port(), Path(args.venv), args.slots)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    started = start(home)
    print(f"FLINK_HOME  {home}\nREST        {rest_url(home)}\nPIDs        "
          f"{' '.join(map(str, started))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
