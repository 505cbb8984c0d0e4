#!/bin/sh
# Ly's ratios to tipg on two commits, on this machine, alternating: `make bench-before-after`.
#
#   bench/before_after.sh [BEFORE_COMMIT] [RUNS]      (default: ccb35fd, 3 runs each)
#
# The commit before is checked out in a git worktree (BENCH_BEFORE_TREE, default
# /tmp/ly-before-<commit>) and runs its own bench against its own database, ly_bench_before
# (built there with that commit's migrations and generator: the shelters are the same rows
# as in ly_bench, which the commit after builds with its migrations). Both use this
# checkout's venv and the same peers' venvs (bench/.venvs). The runs alternate, before then
# after, so a change in the machine's speed falls on both; then bench.compare prints the
# median of each side's Ly ÷ tipg ratios per scenario and zoom and whether they agree
# within ±10 %. BENCH_ARGS is passed to every run (e.g. '--quick --duration 3' to try it).
set -eu
before=${1:-ccb35fd}
runs=${2:-3}
root=$(git rev-parse --show-toplevel)
cd "$root"
tree=${BENCH_BEFORE_TREE:-/tmp/ly-before-$before}
py="$root/.venv/bin/python"
scenarios=${BENCH_SCENARIOS:-items-bbox,mvt-tiles}
extra=${BENCH_ARGS:-}
case " $extra " in
    *" --quick "*) db=ly_bench_before_quick ;;
    *) db=ly_bench_before ;;
esac
if [ ! -d "$tree" ]; then
    git -C "$root" worktree add --detach "$tree" "$before"
fi
mkdir -p "$root/bench/.venvs"
[ -e "$tree/bench/.venvs" ] || ln -s "$root/bench/.venvs" "$tree/bench/.venvs"
since=$(date -u +%Y-%m-%dT%H:%M:%S)
k=1
while [ "$k" -le "$runs" ]; do
    echo "== run $k of $runs: before ($before, $tree, database $db)"
    # shellcheck disable=SC2086
    (cd "$tree" && "$py" -m bench.run --database "$db" --servers ly,tipg \
        --scenarios "$scenarios" $extra)
    echo "== run $k of $runs: after ($(git -C "$root" rev-parse --short HEAD))"
    # shellcheck disable=SC2086
    (cd "$root" && "$py" -m bench.run --servers ly,tipg --scenarios "$scenarios" $extra)
    k=$((k + 1))
done
"$py" -m bench.compare --before "$tree/bench/results" --after "$root/bench/results" \
    --since "$since" --scenarios "$scenarios"
