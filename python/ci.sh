#!/usr/bin/env bash
# Builds procman's Python extension as a wheel, installs it into python/.venv and runs the
# pytest suite. Exits non-zero if the build or a test fails. Usage: bash python/ci.sh
# (from anywhere). PYTHON picks the interpreter for the venv (default: python3, >= 3.9).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
start=$SECONDS

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7"

# The wheel is what users install: build it (release, abi3) and install it, replacing any
# editable install left by `maturin develop`.
rm -rf dist
.venv/bin/maturin build --release --out dist --interpreter .venv/bin/python
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps dist/procman-*.whl
echo "python/ci.sh: wheel built and installed in $((SECONDS - start)) s"

# Run from tests/ so that `import procman` is the installed wheel, not the source folder.
cd tests
../.venv/bin/python -m pytest -p no:cacheprovider -q -rfE .
