#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for PROCMAN_FUZZ_SECS seconds each (default 30), one
# after the other, starting from the committed corpus in fuzz/corpus/<target>. New inputs go to
# a scratch directory (PROCMAN_FUZZ_OUT, default a fresh temporary one), never into the committed
# corpus, so a CI run leaves the tree clean. Fails when any target finds a crash, a panic, a leak
# or a hang (the state_machine target runs with -timeout=60).
#
# The checks live in fuzz/checks/<target>.rs; `cargo test` replays the committed corpora through
# them without cargo-fuzz (cli/tests/fuzz_corpora.rs for the parsers,
# tests/fuzz_state_machine.rs for state_machine), so an input minimised into
# fuzz/corpus/<target> becomes a regression test.
#
#   PROCMAN_FUZZ_SECS=30      seconds per target
#   PROCMAN_FUZZ_TARGETS="…"  which targets (default: all of them)
#   PROCMAN_FUZZ_OUT=dir      keep new inputs and the logs there (dir/<target>, dir/<target>.log)
#   PROCMAN_FUZZ_INSTALL=1    install cargo-fuzz (`cargo install cargo-fuzz --locked`) if missing
#   PROCMAN_FUZZ_STABLE=1     use the stable toolchain even when a nightly one is installed
#
# Needs cargo-fuzz and a nightly toolchain (libFuzzer's sanitizer flags are unstable). Without a
# nightly toolchain it uses the stable one with RUSTC_BOOTSTRAP=1 and no sanitizer (coverage
# guidance and panics still work; memory errors are not detected, which safe Rust mostly rules
# out anyway). Without cargo-fuzz it prints why and exits 0: fuzzing is a bonus, not a gate
# that a machine without the tool could never pass.
set -euo pipefail

secs=${PROCMAN_FUZZ_SECS:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${PROCMAN_FUZZ_TARGETS:-"state_machine words duration job_line joblog_line"}

if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${PROCMAN_FUZZ_INSTALL:-0}" = 1 ]; then
        echo "fuzz: installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    else
        echo "fuzz: SKIPPED: cargo-fuzz is not installed" \
            "(run 'cargo install cargo-fuzz --locked' or set PROCMAN_FUZZ_INSTALL=1)"
        exit 0
    fi
fi

if [ "${PROCMAN_FUZZ_STABLE:-0}" != 1 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=()
    echo "fuzz: nightly toolchain, AddressSanitizer on"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    sanitizer=(--sanitizer none)
    echo "fuzz: no nightly toolchain; stable with RUSTC_BOOTSTRAP=1 and no sanitizer"
fi

out=${PROCMAN_FUZZ_OUT:-$(mktemp -d -t procman-fuzz.XXXXXX)}
mkdir -p "$out"
cd "$root/fuzz"
"${fuzz[@]}" build "${sanitizer[@]}"
# The state machine runs without a sanitizer (see below), built in a target dir of its own so
# neither build invalidates the other.
nosan=(--sanitizer none --target-dir "$root/fuzz/target/nosan")
"${fuzz[@]}" build "${nosan[@]}" state_machine

failed=()
for t in $targets; do
    mkdir -p "$out/$t" "corpus/$t"
    extra=()
    san=("${sanitizer[@]}")
    if [ "$t" = state_machine ]; then
        # Each op is two bytes; hangs are findings. No sanitizer: under ASan this target runs
        # about ten times slower (every fork of the big ASan process is costly: 5 inputs/s
        # instead of about 50), and it checks the state machine's invariants, not memory
        # safety (the parsers keep ASan).
        extra=(-max_len=48 -len_control=0 -timeout=60)
        san=("${nosan[@]}")
    fi
    echo "fuzz: $t for ${secs}s"
    if "${fuzz[@]}" run "${san[@]}" "$t" "$out/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 "${extra[@]}" >"$out/$t.log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$t.log" | tail -1 || true)
    echo "fuzz: $t: $status: ${done_line:-no DONE line} (log: $out/$t.log)"
    if [ "$status" = FAILED ]; then
        grep -v '^INFO' "$out/$t.log" | grep -E -A12 'panicked|ERROR|SUMMARY|timeout' | head -40 || true
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (crashing inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "fuzz: all targets clean"
