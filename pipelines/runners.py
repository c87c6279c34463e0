"""Runner selection and the options each runner needs.

``earlyrisk run --runner direct|portable|flink|dataflow`` (Beam's class names
work too). :func:`configure` resolves the alias, fills safe defaults and
checks that the options a runner cannot do without are present, raising
:class:`~pipelines.options.OptionsError` with a one-line reason otherwise.

Flink-specific settings that Beam's Python ``FlinkRunnerOptions`` does not
declare (checkpointing, state backend, savepoints) are declared in
:class:`FlinkClusterOptions`; the portable runner forwards them to the Flink
job server, whose Java ``FlinkPipelineOptions`` reads them.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    TestOptions,
)

from pipelines.options import OptionsError

RUNNERS = {
    "direct": "DirectRunner",
    "portable": "PortableRunner",
    "flink": "FlinkRunner",
    "dataflow": "DataflowRunner",
}
_LOCAL = {"DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


class FlinkClusterOptions(PipelineOptions):
    """Flink job-server options (forwarded to Java's FlinkPipelineOptions)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--checkpointing_interval", type=int, default=None,
            help="Flink: milliseconds between checkpoints (exactly-once state needs them; "
                 "e.g. 60000)")
        parser.add_argument(
            "--state_backend", default=None, choices=("rocksdb", "filesystem", "hashmap"),
            help="Flink: state backend; rocksdb for per-user state beyond memory")
        parser.add_argument(
            "--state_backend_storage_path", default=None,
            help="Flink: durable URI for checkpoints, e.g. s3://bucket/checkpoints")
        parser.add_argument(
            "--savepoint_path", default=None,
            help="Flink: restore state from this savepoint when starting (upgrade)")
        parser.add_argument(
            "--allow_non_restored_state", action="store_true", default=None,
            help="Flink: start from a savepoint even if some state has no matching step")


def runner_name(options: PipelineOptions) -> str:
    std = options.view_as(StandardOptions)
    return RUNNERS.get((std.runner or "direct").lower(), std.runner or "DirectRunner")


def is_dry_run(options: PipelineOptions) -> bool:
    return bool(options.view_as(TestOptions).dry_run)


def waits_for_completion(options: PipelineOptions) -> bool:
    """True when the job runs in this process and ``run`` should wait for it."""
    name = runner_name(options)
    if name in _LOCAL:
        return True
    if name == "PortableRunner":
        return options.view_as(PortableOptions).job_endpoint == "embed"
    return False


def configure(options: PipelineOptions) -> str:
    """Resolve the runner alias and validate what that runner needs."""
    std = options.view_as(StandardOptions)
    name = runner_name(options)
    std.runner = name
    if name == "PortableRunner":
        portable = options.view_as(PortableOptions)
        if not portable.job_endpoint:
            raise OptionsError(
                "--runner portable needs --job_endpoint HOST:PORT (a Beam job server), "
                "or --job_endpoint embed to run in-process")
        if portable.job_endpoint == "embed" and not portable.environment_type:
            portable.environment_type = "LOOPBACK"
    elif name == "FlinkRunner":
        flink = options.view_as(FlinkRunnerOptions)
        if not flink.flink_master or flink.flink_master in ("[auto]", "[local]"):
            raise OptionsError(
                "--runner flink needs --flink_master HOST:PORT (the JobManager's REST "
                "endpoint); see deploy/flink/README.md")
        portable = options.view_as(PortableOptions)
        if not portable.environment_type:
            raise OptionsError(
                "--runner flink needs --environment_type EXTERNAL --environment_config "
                "HOST:50000 (SDK worker pool) or PROCESS/DOCKER; see deploy/flink/README.md")
    elif name == "DataflowRunner":
        gcp = options.view_as(GoogleCloudOptions)
        missing = [flag for flag, value in (("--project", gcp.project), ("--region", gcp.region),
                                            ("--temp_location", gcp.temp_location))
                   if not value]
        if missing:
            raise OptionsError(f"--runner dataflow needs {', '.join(missing)}")
        if not str(gcp.temp_location).startswith("gs://"):
            raise OptionsError("--temp_location must be a gs:// path on Dataflow")
    elif name not in _LOCAL:
        raise OptionsError(
            f"unsupported runner {std.runner!r} (choose from {', '.join(RUNNERS)})")
    return name
