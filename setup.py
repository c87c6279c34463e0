"""earlyrisk: early risk detection of depression on Reddit, as an Apache Beam job.

Dependencies are pinned: the bundled model's content hash is reproduced by
``earlyrisk train`` only with the same numerical stack, and Dataflow/Flink
workers must run the same versions as the launcher.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "scikit-learn==1.9.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "duckdb==2.0.0",
    # Kafka client of the kafka:// source (librdkafka; ~60x faster than kafka-python on Tansu)
    "confluent-kafka==2.16.1",
]

EXTRAS = {
    "dev": [
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
        "hypothesis==6.170.15",
        "ruff==0.17.6",
    ],
}

setup(
    name="earlyrisk",
    version="0.1.0",
    description="Streaming early risk detection of depression on Reddit (Apache Beam)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "transforms*", "models*", "corpora*",
                                    "storage*"]),
    package_data={"models": ["default/*.json", "default/*.npy"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["earlyrisk=pipelines.cli:main"]},
    license="Apache-2.0",
)
