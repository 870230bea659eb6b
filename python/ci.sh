#!/usr/bin/env bash
# Builds procman's Python extension as the wheel users install (abi3, manylinux2014 = glibc
# 2.17, built by maturin with zig), checks its platform tag with auditwheel, installs it into
# python/.venv, checks the type stubs with mypy's stubtest and runs the pytest suite.
# Exits non-zero if any step fails. Usage: bash python/ci.sh (from anywhere).
# Environment: PYTHON picks the interpreter for the venv (default: python3, >= 3.9);
# CCP4I2, a CCP4i2 checkout or git mirror: when set, CCP4i2's own 15 tests also run against
# the original manager and against procman (python/ccp4i2_check.sh), and both times are printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
start=$SECONDS

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" \
    "pytest>=7" "pytest-asyncio>=0.23" "ziglang>=0.11" "auditwheel>=6" "mypy>=1.10"
# maturin finds zig through `python -m ziglang` of the python on PATH.
export PATH="$here/.venv/bin:$PATH"

# The wheel is what users install: release, abi3 (one wheel for Python >= 3.9), linked by zig
# against glibc 2.17 so that it installs on every distribution CCP4 supports.
rm -rf dist
maturin build --release --zig --compatibility manylinux2014 --out dist \
    --interpreter .venv/bin/python
wheel=(dist/procman-*.whl)
case "${wheel[0]}" in
    *-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl | \
    *-cp39-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl) ;;
    *) echo "python/ci.sh: unexpected wheel name ${wheel[0]}" >&2; exit 1 ;;
esac
# auditwheel reads the symbols the library really needs: they must allow manylinux_2_17.
shown="$(auditwheel show "${wheel[0]}")"
echo "$shown"
if ! tr -s ' \n' ' ' <<<"$shown" | grep -q 'consistent with the following platform tag: "manylinux_2_17_'; then
    echo "python/ci.sh: the wheel is not manylinux_2_17 (manylinux2014) compatible" >&2
    exit 1
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "${wheel[0]}"
echo "python/ci.sh: wheel built, checked and installed in $((SECONDS - start)) s"

# The stubs (procman/_procman.pyi) against the installed native module, and the typed
# pure-Python modules against themselves; run outside the source tree so the wheel is checked.
(cd / && "$here/.venv/bin/python" -m mypy.stubtest procman && "$here/.venv/bin/python" -m mypy --strict -p procman)

# Run from tests/ so that `import procman` is the installed wheel, not the source folder.
(cd tests && ../.venv/bin/python -m pytest -p no:cacheprovider -q -rfE .)

if [ -n "${CCP4I2:-}" ]; then
    PYTHON="$here/.venv/bin/python" bash "$here/ccp4i2_check.sh" "$CCP4I2"
fi
