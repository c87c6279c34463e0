"""``earlyrisk run --engine flink``: the Flink job, started from the project's venv.

PyFlink cannot live beside Beam 2.77 (it pins Beam <= 2.61), so the job runs
under its own virtualenv (``.venv-flink``, made by ``make flink``). This module
(imported in the project's venv, never importing PyFlink) checks the options
the two engines share, resolves the pseudonymisation key as the Beam job does,
and runs :mod:`flinkjob.job` there; Flink-only options pass through.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_ENV = "EARLYRISK_FLINK_VENV"

# Screening options (ScreeningOptions' dest names) the Flink job takes as they are.
_PASSED = ("input", "output", "model", "threshold", "policy", "max_alerts_per_user",
           "state_ttl_days", "dedupe_window", "max_message_bytes", "max_future_skew_hours",
           "sink_retry_seconds", "kafka_group", "kafka_start")
_FLAGS = ("no_store_text", "raw_user_ids", "bq_create_tables")


class FlinkUnavailableError(RuntimeError):
    """The Flink virtualenv is missing (a one-line reason)."""


def flink_python() -> Path:
    """The Flink venv's interpreter: ``$EARLYRISK_FLINK_VENV`` or ``.venv-flink``."""
    venv = Path(os.environ.get(VENV_ENV) or ROOT / ".venv-flink")
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "connectors").is_dir():
        raise FlinkUnavailableError(
            f"the Flink engine needs its virtualenv {venv}, which is missing or incomplete: "
            "run 'make flink' in the repository (or set $EARLYRISK_FLINK_VENV)")
    return python


def job_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The Flink job's arguments for ``earlyrisk run`` arguments ``args``.

    Raises ValueError (one line) for what the Flink job does not do.
    """
    from pipelines.options import OptionsError, ScreeningOptions, key_source

    if args.input.startswith("pubsub:"):
        raise ValueError("--engine flink reads file:// and kafka:// (Pub/Sub: use the Beam "
                         "engine)")
    if args.bq_method != "streaming":
        raise ValueError("--engine flink writes BigQuery with streaming inserts only")
    if args.until_caught_up:
        raise ValueError("--engine flink reads Kafka as a stream; --until-caught-up is a "
                         "Beam-engine option")
    if args.kafka_use_xlang or args.pseudonym_key_secret:
        raise ValueError("--kafka-use-xlang and --pseudonym-key-secret are Beam-engine options")
    argv: list[str] = []
    for name in _PASSED:
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for name in _FLAGS:
        if getattr(args, name):
            argv.append(f"--{name.replace('_', '-')}")
    # The key is resolved here exactly as for the Beam job (the default key
    # file is created on a first run); only its location travels.
    opts = ScreeningOptions([f"--{k}={v}" for k, v in (
        ("pseudonym_key_file", args.pseudonym_key_file),) if v] +
        (["--raw_user_ids"] if args.raw_user_ids else []))
    try:
        keys = key_source(opts)
    except OptionsError as e:
        raise ValueError(str(e)) from None
    if keys.key_file and not os.environ.get("EARLYRISK_PSEUDONYM_KEY"):
        argv += ["--pseudonym-key-file", keys.key_file]
    return argv + list(extra)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the Flink job on a local MiniCluster; its exit status."""
    python = flink_python()
    argv = job_argv(args, extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    return subprocess.call([str(python), "-m", "flinkjob.job", *argv], env=env)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: earlyrisk run --engine flink ...")
