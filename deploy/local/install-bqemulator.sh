#!/usr/bin/env bash
# Install the BigQuery emulator (PyPI `bqemulator`) into its own virtualenv.
#
# It pins its own sqlglot and grpcio-tools, so it cannot share the project's
# venv. Offline, its start would hang ~75 s trying to download DuckDB's spatial
# and avro extensions: we install them from their PyPI wheels into DuckDB's
# extension directory instead; its UDFs need numpy, which it does not declare.
# Idempotent: quick when already done.
#
#   bash deploy/local/install-bqemulator.sh          # -> .venv-bqemulator
#   BQEMU_VENV=/path bash deploy/local/install-bqemulator.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3.11}
BQEMU_VENV=${BQEMU_VENV:-.venv-bqemulator}
BQEMU_VERSION=1.4.0
DUCKDB_VERSION=1.5.5
STAMP="$BQEMU_VENV/.installed-bqemulator-$BQEMU_VERSION-duckdb-$DUCKDB_VERSION-numpy"
EXT_DIR="$HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64"

if [ -e "$STAMP" ] && [ -e "$EXT_DIR/spatial.duckdb_extension" ] \
        && [ -e "$EXT_DIR/avro.duckdb_extension" ]; then
    echo "bqemulator $BQEMU_VERSION already installed in $BQEMU_VENV"
    exit 0
fi

[ -x "$BQEMU_VENV/bin/python" ] || "$PYTHON" -m venv "$BQEMU_VENV"
"$BQEMU_VENV/bin/pip" install --quiet --upgrade pip
"$BQEMU_VENV/bin/pip" install --quiet "bqemulator==$BQEMU_VERSION" "duckdb==$DUCKDB_VERSION" \
    "duckdb-extension-spatial==$DUCKDB_VERSION" "duckdb-extension-avro==$DUCKDB_VERSION" \
    "numpy==2.4.6"

# Copy the extension binaries shipped in the wheels where DuckDB looks first.
mkdir -p "$EXT_DIR"
"$BQEMU_VENV/bin/python" - "$EXT_DIR" <<'PY'
import pathlib, shutil, sys, sysconfig
dest = pathlib.Path(sys.argv[1])
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for name in ("spatial", "avro"):
    found = sorted(site.rglob(f"{name}.duckdb_extension"))
    if not found:
        sys.exit(f"install-bqemulator: {name}.duckdb_extension not found in {site}")
    shutil.copy2(found[0], dest / found[0].name)
    print(f"installed {found[0].name} -> {dest}")
PY
touch "$STAMP"
echo "bqemulator $BQEMU_VERSION installed in $BQEMU_VENV"
