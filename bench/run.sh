#!/usr/bin/env bash
# procman next to the other ways of running many programs, side by side in one run.
#
#   bench/run.sh [-n N] [-j J] [-r RUNS] [--logroot DIR] [--sample MS]
#
# Workload: N jobs of /bin/true (default 500), at most J at once (default 10); each job's stdout
# and stderr go to a log file of its own, stdin is /dev/null. Peers (all from this clone):
#   procman        examples/bench_peer.rs: the library, one JobSpec per job (log file with stderr
#                  merged), a trivial handler, wait_all
#   procman-sample with --sample MS: the procman peer with live usage sampling every MS ms
#                  (`Builder::sample_interval`, PROCMAN_SAMPLE=MS), to measure its cost
#   procman-batch  the `procman batch -j J -q --log-dir DIR` tool on a job file of N lines
#                  "/bin/true" (two files per job: N.log and N_err.txt)
#   raw            examples/bench_raw.rs: J threads, std::process::Command with the log file as
#                  stdout and stderr, status(), a trivial handler (no procman)
#   xargs          xargs -P J, one `sh -c 'exec /bin/true >LOG 2>&1'` per job for the redirection
#   parallel       GNU parallel -j J with the redirection in the job's command line (skipped,
#                  with a note, when not installed)
#   asyncio        bench/asyncio_peer.py: an asyncio manager of the design procman replaces
#                  (create_subprocess_exec, Semaphore(J), output collected, then written to the log)
# Runs are interleaved (round k runs every peer once) so drift hits all alike; the table has the
# median wall time of RUNS runs (default 3), measured here around the whole process
# (interpreter start-up included), jobs/s = N / wall, and wall over procman's wall. "check" is ok
# when the peer exited 0 and left N log files in every run. Job logs go to LOGROOT (default
# /dev/shm, a tmpfs, when there is one: on a disk, creating and deleting thousands of files costs
# more than the spawns) and are deleted after each run.
set -euo pipefail
cd "$(dirname "$0")/.."

N=500 J=10 RUNS=3 LOGROOT= SAMPLE=
while [ $# -gt 0 ]; do
    case "$1" in
        -n) N=$2; shift 2 ;;
        -j) J=$2; shift 2 ;;
        -r) RUNS=$2; shift 2 ;;
        --logroot) LOGROOT=$2; shift 2 ;;
        --sample) SAMPLE=$2; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
for v in "$N" "$J" "$RUNS" ${SAMPLE:+"$SAMPLE"}; do
    case "$v" in ''|*[!0-9]*|0) echo "bench/run.sh: -n, -j, -r and --sample take a positive integer" >&2; exit 2 ;; esac
done

echo "building (release) ..." >&2
cargo build --release --quiet --workspace --bin procman
cargo build --release --quiet -p procman --example bench_peer --example bench_raw
PROCMAN=$PWD/target/release/procman
LIB=$PWD/target/release/examples/bench_peer
RAW=$PWD/target/release/examples/bench_raw
ASYNCIO=$PWD/bench/asyncio_peer.py

work=$(mktemp -d "${TMPDIR:-/tmp}/procman-bench.XXXXXX")
if [ -z "$LOGROOT" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then LOGROOT=/dev/shm; else LOGROOT=$work; fi
fi
logs=$(mktemp -d "$LOGROOT/procman-bench-logs.XXXXXX")
trap 'rm -rf "$work" "$logs"' EXIT
seq 0 $((N - 1)) > "$work/numbers"
sed 's|.*|/bin/true|' "$work/numbers" > "$work/jobs.txt"

peers=(procman procman-batch raw xargs)
if [ -n "$SAMPLE" ]; then peers=(procman procman-sample "${peers[@]:1}"); fi
notes=()
if command -v parallel >/dev/null 2>&1; then
    peers+=(parallel)
else
    notes+=("parallel: skipped, GNU parallel is not installed")
fi
# The interpreter itself, not a version manager's shim (pyenv's costs ~0.3 s per start).
if PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [ -n "$PYTHON" ]; then
    peers+=(asyncio)
else
    notes+=("asyncio: skipped, python3 is not installed")
fi

# Runs peer $1 once with its logs in directory $2 (which does not exist yet).
run_peer() {
    local dir=$2
    case "$1" in
        procman) "$LIB" w1 "$N" "$J" "$dir" ;;
        procman-sample) PROCMAN_SAMPLE=$SAMPLE "$LIB" w1 "$N" "$J" "$dir" ;;
        procman-batch) mkdir -p "$dir" && "$PROCMAN" batch -j "$J" -q --log-dir "$dir" "$work/jobs.txt" ;;
        raw) "$RAW" w1 "$N" "$J" "$dir" ;;
        xargs) mkdir -p "$dir" && xargs -P "$J" -I{} sh -c 'exec /bin/true >"$1/job-$2.log" 2>&1' sh "$dir" {} < "$work/numbers" ;;
        parallel) mkdir -p "$dir" && parallel --will-cite -j "$J" "exec /bin/true >$dir/job-{}.log 2>&1" < "$work/numbers" ;;
        asyncio) "$PYTHON" "$ASYNCIO" w1 "$N" "$J" "$dir" ;;
    esac
}

echo "## machine"
echo
echo "- cpus: $(nproc); $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
echo "- kernel: $(uname -sr); $(ldd --version 2>/dev/null | head -1)"
echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null)"
echo "- $(rustc --version); $(${PYTHON:-python3} --version 2>&1 || true); $(xargs --version 2>/dev/null | head -1)"
if command -v parallel >/dev/null 2>&1; then echo "- $(parallel --version 2>/dev/null | head -1)"; fi
echo "- procman: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "- job logs: $LOGROOT ($(df --output=fstype "$LOGROOT" 2>/dev/null | tail -1))"
echo "- load before: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A T OK
for p in "${peers[@]}"; do T[$p]=""; OK[$p]=ok; done
for r in $(seq "$RUNS"); do
    for p in "${peers[@]}"; do
        dir=$logs/$p-$r
        t0=$(date +%s.%N)
        if run_peer "$p" "$dir" >"$work/out" 2>&1; then status=0; else status=$?; fi
        t1=$(date +%s.%N)
        made=$(find "$dir" -maxdepth 1 -name '*.log' 2>/dev/null | wc -l)
        if [ "$status" -ne 0 ] || [ "$made" -ne "$N" ]; then
            OK[$p]="FAILED (run $r: exit $status, $made logs)"
            tail -3 "$work/out" | sed "s/^/  $p: /" >&2
        fi
        w=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
        T[$p]="${T[$p]} $w"
        echo "  round $r: $p $w s" >&2
        rm -rf "$dir"
    done
done

median() { printf '%s\n' $1 | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
base=$(median "${T[procman]}")
echo
echo "## $N × /bin/true, $J at once, each with its log file; median of $RUNS"
echo
echo "| peer | wall s | jobs/s | × procman (wall) | check |"
echo "|---|---|---|---|---|"
for p in "${peers[@]}"; do
    m=$(median "${T[$p]}")
    awk -v p="$p" -v m="$m" -v n="$N" -v b="$base" -v ok="${OK[$p]}" \
        'BEGIN {printf "| %s | %.3f | %.0f | %.2f | %s |\n", p, m, n / m, m / b, ok}'
done
for note in "${notes[@]}"; do echo; echo "$note"; done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: bench/run.sh -n $N -j $J -r $RUNS${SAMPLE:+ --sample $SAMPLE}"
