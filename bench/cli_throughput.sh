#!/usr/bin/env bash
# Throughput of the procman tool and library next to xargs -P and GNU parallel (issue 16).
#
#   bench/cli_throughput.sh [N ...]        # default: 20000 100000
#
# From a clone: builds `procman` and examples/bench_peer in release mode, then runs N
# `/bin/true` jobs at concurrency J (default 10) through
#   procman   procman batch -j J --no-logs JOBFILE   (N lines "/bin/true"; its per-job status
#             lines go to /dev/null)
#   xargs     xargs -P J -n 1 /bin/true < NUMBERS    (each job gets one ignored argument)
#   parallel  parallel -j J /bin/true < NUMBERS      (when installed; PARALLEL_MAX_N, default
#             100000, skips larger N: on a loaded 2-core machine parallel ran ~40 jobs/s)
#   lib       target/release/examples/bench_peer w1 N J LOGDIR: the library, one JobSpec per
#             job with a log file (the ../shared/bench peer contract)
#   lib+host  the same with an inheritable descriptor open and SIGINT/TERM/HUP blocked in the
#             host (PROCMAN_HOST_FD=1 PROCMAN_HOST_BLOCK=1): must match `lib`
# The library's job logs go to LOGROOT (default /dev/shm when there is one, as in
# ../shared/bench: on a disk, creating and deleting 100,000 files cost the manager up to 0.7 ms
# of system time per job here, swamping the spawn). RUNS (default 1) runs of each; the median wall is reported. Prints the machine facts and
# the load before and after, a table (wall s, jobs/s, ratio of wall to xargs), and for each
# tool jobs/s at the largest N over jobs/s at the smallest (1.00 = linear in N).
set -euo pipefail
cd "$(dirname "$0")/.."
J=${J:-10}
RUNS=${RUNS:-1}
PARALLEL_MAX_N=${PARALLEL_MAX_N:-100000}
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(20000 100000)

cargo build --release --quiet --bin procman --example bench_peer
PROCMAN=$PWD/target/release/procman
PEER=$PWD/target/release/examples/bench_peer
work=$(mktemp -d "${TMPDIR:-/tmp}/procman-bench.XXXXXX")
[ -d /dev/shm ] && LOGROOT=${LOGROOT:-/dev/shm} || LOGROOT=${LOGROOT:-$work}
logs=$(mktemp -d "$LOGROOT/procman-bench-logs.XXXXXX")
trap 'rm -rf "$work" "$logs"' EXIT

echo "## machine"
echo "cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel: $(uname -r); $(ldd --version | head -1)"
echo "xargs: $(xargs --version | head -1)"
if command -v parallel >/dev/null; then
    echo "parallel: $(parallel --version 2>/dev/null | head -1)"
fi
echo "procman: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "library logs: $LOGROOT ($(df --output=fstype "$LOGROOT" | tail -1))"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# Median of the wall seconds of RUNS runs of "$@".
wall() {
    local times=() t0 t1
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }
        t1=$(date +%s.%N)
        times+=("$(echo "$t1 - $t0" | bc -l)")
        echo "  $(date +%T) ${times[-1]} s: $*" >&2
    done
    printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

declare -A W
tools=(procman xargs parallel lib lib+host)
for n in "${NS[@]}"; do
    seq "$n" > "$work/numbers"
    sed "s|.*|/bin/true|" "$work/numbers" > "$work/jobs.txt"
    W[procman,$n]=$(wall "$PROCMAN" batch -j "$J" --no-logs "$work/jobs.txt")
    W[xargs,$n]=$(wall xargs -P "$J" -n 1 /bin/true < "$work/numbers")
    if command -v parallel >/dev/null && [ "$n" -le "$PARALLEL_MAX_N" ]; then
        W[parallel,$n]=$(wall sh -c 'parallel -j "$1" /bin/true < "$2"' sh "$J" "$work/numbers")
    fi
    rm -rf "$logs/w1"
    W[lib,$n]=$(wall "$PEER" w1 "$n" "$J" "$logs/w1")
    rm -rf "$logs/w1"
    W[lib+host,$n]=$(wall env PROCMAN_HOST_FD=1 PROCMAN_HOST_BLOCK=1 "$PEER" w1 "$n" "$J" "$logs/w1")
    rm -rf "$logs/w1"
done

echo "## $J at once, /bin/true, median of $RUNS"
echo
echo "| tool | N | wall s | jobs/s | wall / xargs |"
echo "|---|---|---|---|---|"
for n in "${NS[@]}"; do
    for t in "${tools[@]}"; do
        w=${W[$t,$n]:-}
        [ -n "$w" ] || continue
        awk -v t="$t" -v n="$n" -v w="$w" -v x="${W[xargs,$n]}" \
            'BEGIN {printf "| %s | %d | %.2f | %.0f | %.2f |\n", t, n, w, n / w, w / x}'
    done
done
echo
if [ ${#NS[@]} -gt 1 ]; then
    lo=${NS[0]} hi=${NS[-1]}
    echo "## linearity: jobs/s at $hi over jobs/s at $lo (1.00 = linear)"
    echo
    for t in "${tools[@]}"; do
        [ -n "${W[$t,$lo]:-}" ] && [ -n "${W[$t,$hi]:-}" ] || continue
        awk -v t="$t" -v a="${W[$t,$lo]}" -v b="${W[$t,$hi]}" -v lo="$lo" -v hi="$hi" \
            'BEGIN {printf "%s: %.2f\n", t, (hi / b) / (lo / a)}'
    done
fi
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
