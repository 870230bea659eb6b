#!/usr/bin/env python3
"""Minimise a fuzz corpus to at most MAX files (default 199) by greedy set cover of edges.

`cargo fuzz cmin` keeps every file that adds a feature in smallest-first order, which leaves
hundreds of files for the richer targets. This keeps the files that cover the most edges first
and stops at MAX, printing how many of the corpus's edges the kept files still cover.

Usage (from fuzz/, after `cargo fuzz build`):
    python3 cover.py BINARY CORPUS_DIR [MAX]
e.g. python3 cover.py target/x86_64-unknown-linux-gnu/release/job_line corpus/job_line
Files not kept are deleted from CORPUS_DIR.
"""
import os
import subprocess
import sys
import tempfile


def main():
    binary, corpus = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 199
    with tempfile.TemporaryDirectory() as work:
        empty = os.path.join(work, "empty")
        os.mkdir(empty)
        ctl = os.path.join(work, "control")
        # -set_cover_merge makes the control file list every file's full feature set.
        subprocess.run(
            [binary, "-merge=1", "-set_cover_merge=1", "-use_counters=0", "-use_cmp=0",
             "-timeout=60", "-merge_control_file=" + ctl, empty, corpus],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        lines = open(ctl).read().splitlines()
    nfiles = int(lines[0])
    files = lines[2:2 + nfiles]
    feats = {}
    for line in lines[2 + nfiles:]:
        if line.startswith("FT "):
            parts = line.split()
            feats[int(parts[1])] = set(map(int, parts[2:]))
    universe = set().union(*feats.values()) if feats else set()
    covered, keep = set(), []
    while len(keep) < limit and feats:
        best = max(feats, key=lambda i: len(feats[i] - covered))
        gain = feats[best] - covered
        if not gain:
            break
        keep.append(best)
        covered |= gain
    kept = {os.path.basename(files[i]) for i in keep}
    for name in os.listdir(corpus):
        if name not in kept:
            os.remove(os.path.join(corpus, name))
    print(f"{corpus}: kept {len(kept)} files covering {len(covered)}/{len(universe)} edges")


if __name__ == "__main__":
    main()
