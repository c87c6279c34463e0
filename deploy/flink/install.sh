#!/usr/bin/env bash
# Install the native Flink engine (PyFlink) into its own virtualenv, .venv-flink.
#
# apache-flink 2.3.0 pins apache-beam <= 2.61 (and numpy < 2.2), so it cannot
# share the project's venv (Beam 2.77). The wheel is a whole Flink
# distribution (bin/flink, start-cluster.sh, lib/flink-dist), which is what
# `earlyrisk run --engine flink` and a standalone cluster run on. Besides it:
# duckdb and google-cloud-bigquery (the sinks), at the project's versions.
#
# Kafka: no Apache wheel ships Flink's Kafka connector. The PyPI wheel
# shigawire-apache-flink-libraries==2.0.0.post1 contains Apache's
# flink-connector-kafka 4.0.1-2.0 and kafka-clients 3.9.1 (both Apache-2.0):
# the wheel is downloaded (never installed: it would drop Flink 2.0 jars into
# pyflink/lib) and only those two jars, with the licence and NOTICE files they
# carry, are extracted into .venv-flink/connectors/ (see deploy/flink/README.md).
#
# Idempotent: quick when already done (stamp file).
#
#   bash deploy/flink/install.sh                      # -> .venv-flink
#   FLINK_VENV=/path bash deploy/flink/install.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3.11}
FLINK_VENV=${FLINK_VENV:-.venv-flink}
FLINK_VERSION=2.3.0
CONNECTOR_WHEEL=shigawire-apache-flink-libraries==2.0.0.post1
SINK_PACKAGES=("duckdb==2.0.0" "google-cloud-bigquery==3.47.0")
STAMP="$FLINK_VENV/.installed-$(cat "$0" | sha1sum | cut -c1-12)"

if [ -e "$STAMP" ]; then
    echo "PyFlink $FLINK_VERSION already installed in $FLINK_VENV"
    exit 0
fi
command -v "$PYTHON" >/dev/null 2>&1 || { echo "need $PYTHON (Python 3.11); set PYTHON=..." >&2; exit 1; }
command -v java >/dev/null 2>&1 || { echo "PyFlink needs a Java runtime (java on PATH)" >&2; exit 1; }

[ -x "$FLINK_VENV/bin/python" ] || "$PYTHON" -m venv "$FLINK_VENV"
"$FLINK_VENV/bin/pip" install --quiet --upgrade pip
"$FLINK_VENV/bin/pip" install --quiet "apache-flink==$FLINK_VERSION" "${SINK_PACKAGES[@]}"
"$FLINK_VENV/bin/pip" check

# The Kafka connector jars, with their licence and NOTICE.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$FLINK_VENV/bin/pip" download --quiet --no-deps --dest "$tmp" "$CONNECTOR_WHEEL"
"$FLINK_VENV/bin/python" - "$tmp" "$FLINK_VENV/connectors" <<'PY'
import io, pathlib, sys, zipfile

tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
wheel = next(tmp.glob("*.whl"))
found = []
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if base not in ("flink-connector-kafka.jar", "kafka-clients.jar"):
            continue
        data = z.read(name)
        with zipfile.ZipFile(io.BytesIO(data)) as j:
            # Name the jar by the version it declares (manifest, or Kafka's version file).
            meta = j.read("META-INF/MANIFEST.MF").decode(errors="replace")
            if "kafka/kafka-version.properties" in j.namelist():
                meta += j.read("kafka/kafka-version.properties").decode()
            version = next((line.split(":" if ":" in line else "=", 1)[1].strip()
                            for line in meta.splitlines()
                            if line.startswith(("Implementation-Version:", "version="))),
                           "unknown")
            jar = dest / f"{base[:-4]}-{version}.jar"
            for member in j.namelist():
                if member in ("LICENSE", "NOTICE", "META-INF/LICENSE", "META-INF/NOTICE"):
                    (dest / f"{jar.stem}.{member.rsplit('/', 1)[-1]}").write_bytes(j.read(member))
        jar.write_bytes(data)
        found.append(jar)
if len(found) != 2:
    sys.exit(f"expected the Kafka connector and kafka-clients jars in {wheel.name}, found {found}")
print("Kafka connector:", ", ".join(p.name for p in sorted(found)), "->", dest)
PY

rm -f "$FLINK_VENV"/.installed-*
touch "$STAMP"
echo "PyFlink $FLINK_VERSION installed in $FLINK_VENV"
