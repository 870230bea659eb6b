#!/usr/bin/env bash
# Runs CCP4i2's own tests of its AsyncProcessManager twice in one run: against CCP4i2's
# original (asyncio) manager, then against procman.ccp4i2.AsyncProcessManager, and prints both
# times. Nothing of CCP4i2 is kept: the files are extracted into a temporary folder that is
# removed at the end.
#
# Usage: bash python/ccp4i2_check.sh CCP4I2 [REV]
#   CCP4I2  a CCP4i2 checkout (its server/ccp4i2/ is used as it is on disk) or a git
#           repository, bare or not (REV is read from it with git; default: django)
# Environment: PYTHON, an interpreter with procman, pytest and pytest-asyncio installed
# (default: python/.venv/bin/python if present, else python3); CCP4I2_CHECK_ROUNDS, how many
# times each run is repeated, interleaved (default 1; the medians are printed);
# CCP4I2_CHECK_PYTEST_ARGS, extra pytest arguments (e.g. --durations=0).
# Exit status: non-zero if either run has a failing test (both runs always happen).
#
# What is extracted (paths under server/ccp4i2/): core/async_process_manager.py (the original),
# core/base_object/signal_system.py (the Signal system the plugin tests chain through) and
# tests/async/test_async_process_manager.py, tests/async/test_async_plugin_integration.py
# (15 tests). The packages' __init__ files are written empty, so nothing else of CCP4i2
# (Django, its data classes) is imported. The procman run adds a conftest.py that puts
# procman.ccp4i2 in place of ccp4i2.core.async_process_manager before the tests import it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${1:?usage: ccp4i2_check.sh CCP4I2_CHECKOUT_OR_GIT_DIR [REV]}"
rev="${2:-django}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$here/.venv/bin/python" ]; then PYTHON="$here/.venv/bin/python"; else PYTHON=python3; fi
fi

files=(
    core/async_process_manager.py
    core/base_object/signal_system.py
    tests/async/test_async_process_manager.py
    tests/async/test_async_plugin_integration.py
)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ccp4i2-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# One tree per run, so that neither run sees the other's conftest or bytecode.
for run in original procman; do
    root="$tmp/$run"
    for f in "${files[@]}"; do
        mkdir -p "$root/ccp4i2/$(dirname "$f")"
        if [ -d "$src/server/ccp4i2" ]; then
            cp "$src/server/ccp4i2/$f" "$root/ccp4i2/$f"
        else
            git -C "$src" show "$rev:server/ccp4i2/$f" > "$root/ccp4i2/$f"
        fi
    done
    for d in ccp4i2 ccp4i2/core ccp4i2/core/base_object ccp4i2/tests ccp4i2/tests/async; do
        : > "$root/$d/__init__.py"
    done
    cat > "$root/pytest.ini" <<'EOF'
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
python_files = test_*.py
EOF
done

cat > "$tmp/procman/conftest.py" <<'EOF'
# Substitutes procman's drop-in for CCP4i2's module before the tests import it.
import sys

import ccp4i2.core
import procman.ccp4i2

sys.modules["ccp4i2.core.async_process_manager"] = procman.ccp4i2
ccp4i2.core.async_process_manager = procman.ccp4i2
EOF

status=0
rounds="${CCP4I2_CHECK_ROUNDS:-1}"
declare -A took
for ((round = 1; round <= rounds; round++)); do
    for run in original procman; do
        echo "=== round $round: CCP4i2's tests against the $run AsyncProcessManager"
        t0=$(date +%s.%N)
        (cd "$tmp/$run" && "$PYTHON" -m pytest -p no:cacheprovider -q ${CCP4I2_CHECK_PYTEST_ARGS:-} \
            ccp4i2/tests/async/test_async_process_manager.py \
            ccp4i2/tests/async/test_async_plugin_integration.py) || status=1
        t1=$(date +%s.%N)
        took[$run]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "=== CCP4i2's 15 tests, whole pytest process, $rounds round(s) interleaved:"
echo "    original: ${took[original]}s (median $(echo "${took[original]}" | median) s)"
echo "    procman:  ${took[procman]}s (median $(echo "${took[procman]}" | median) s)"
exit $status
