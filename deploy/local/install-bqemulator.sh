#!/usr/bin/env bash
# bqemulator (BigQuery REST/gRPC over DuckDB) in its own virtualenv, for tests of
# the BigQuery backends. It pins its own duckdb/sqlglot/grpcio, hence the venv.
# Offline, its start hangs trying to download DuckDB's spatial and avro
# extensions: they are copied from their PyPI wheels into DuckDB's extension dir.
# Idempotent. Usage: VENV=.venv bash deploy/local/install-bqemulator.sh
set -euo pipefail
BQVENV="${BQVENV:-.venv-bqemulator}"
PY="${PYTHON:-python3.11}"
# numpy: bqemulator's built-in UDFs need it at start but do not declare it.
if ! "$BQVENV/bin/python" -c "import bqemulator, numpy" 2>/dev/null; then
    [ -x "$BQVENV/bin/python" ] || "$PY" -m venv "$BQVENV"
    "$BQVENV/bin/pip" install --quiet bqemulator==1.4.0 duckdb==1.5.5 numpy==2.4.6 \
        duckdb-extension-spatial==1.5.5 duckdb-extension-avro==1.5.5
fi
DEST="${HOME}/.duckdb/extensions/v1.5.5/linux_amd64"
mkdir -p "$DEST"
SITE="$("$BQVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for ext in spatial avro; do
    if [ ! -f "$DEST/$ext.duckdb_extension" ]; then
        cp "$SITE/duckdb_extension_$ext/extensions/v1.5.5/$ext.duckdb_extension" "$DEST/"
    fi
done
"$BQVENV/bin/bqemulator" --help >/dev/null
