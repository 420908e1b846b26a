#!/usr/bin/env bash
# Byte-identity of two kpi binaries: the whole catalogue on generated data at two seeds,
# in all three layouts (csv, parquet, hive), under seven option sets, compared file by
# file. What an engine change must keep (issue 10: "output before and after is
# byte-identical").
#
#   bench/same.sh BASE_KPI NEW_KPI [--scale 20] [--work DIR]
#
# BASE_KPI, NEW_KPI  two `kpi` executables (e.g. one built at main, one with the change)
# --scale S          data size per root (default 20: ~170k rows, seconds per run)
# --work DIR         where the roots and outputs go (default target/same)
#
# Prints one line per differing output and a total; exits 1 when any differs.
set -euo pipefail

base=${1:?usage: bench/same.sh BASE_KPI NEW_KPI [--scale S] [--work DIR]}
new=${2:?usage: bench/same.sh BASE_KPI NEW_KPI [--scale S] [--work DIR]}
shift 2
cd "$(dirname "$0")/.."
scale=20
work=target/same
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "same.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

# Each option set is one line; an empty line is the default run.
options=(
    ""
    "--tz Europe/Berlin"
    "--by segment"
    "--by segment --tz America/New_York --grain week"
    "--memory-limit 32MiB"
    "--grain quarter --threads 1"
    "--grain day --threads 1"
)

mkdir -p "$work"
# `--by segment` runs the metrics that have the dimension (the others would refuse it).
read -r -a sliced <<< "$("$base" list --format json | python3 -c 'import json, sys
print(" ".join(m["name"] for m in json.load(sys.stdin) if "segment" in m["dimensions"]))')"
runs=0
differ=0
for seed in 7 42; do
    for layout in csv parquet hive; do
        root=$work/data-$seed-$layout-$scale
        if [ ! -f "$root/.complete" ]; then
            rm -rf "$root"
            "$base" gen "$root" --scale "$scale" --seed "$seed" --format "$layout" >/dev/null
            touch "$root/.complete"
        fi
        for i in "${!options[@]}"; do
            read -r -a opts <<< "${options[$i]}"
            metrics=()
            case "${options[$i]}" in *--by*) metrics=("${sliced[@]}") ;; esac
            for side in base new; do
                bin=$base
                [ "$side" = new ] && bin=$new
                rm -f "$work/$side.$seed.$layout.$i.csv"
                "$bin" run "${metrics[@]}" --data "$root" --format csv \
                    --out "$work/$side.$seed.$layout.$i.csv" "${opts[@]}" \
                    2> "$work/$side.$seed.$layout.$i.err" || echo "exit $?" >> "$work/$side.$seed.$layout.$i.err"
            done
            runs=$((runs + 1))
            if [ ! -s "$work/base.$seed.$layout.$i.csv" ]; then
                echo "no output: seed $seed, $layout, options '${options[$i]}' ($(head -c 200 "$work/base.$seed.$layout.$i.err"))"
                differ=$((differ + 1))
            elif ! cmp -s "$work/base.$seed.$layout.$i.csv" "$work/new.$seed.$layout.$i.csv" ||
                ! cmp -s "$work/base.$seed.$layout.$i.err" "$work/new.$seed.$layout.$i.err"; then
                differ=$((differ + 1))
                echo "differs: seed $seed, $layout, options '${options[$i]}'"
            fi
        done
    done
done
echo "$differ of $runs outputs differ"
[ "$differ" -eq 0 ]
