#!/usr/bin/env bash
# The lake benchmark: kpi against a scan floor and hand-written SQL (DataFusion, DuckDB),
# all measured in the same run over the same hive lake. See bench/README.md.
#
#   bench/lake.sh [--scale 700] [--lake DIR] [--runs 3] [--results DIR]
#
# --scale S     lake of `kpi gen --scale S --format hive` (700: ~1M orders, 7000: ~10M,
#               70000: ~100M), generated into target/bench-lakes/scale-S unless there
# --lake DIR    use this lake instead (hive or Parquet data root with the CRM tables)
# --runs N      rounds; each round runs every measurement once, in a fresh process,
#               and the table shows the best round of each (default 3)
# --results DIR where raw timings go (default target/bench-results/<lake name>/<time>)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
scale=700
lake=
runs=3
results=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale=$2; shift 2 ;;
        --lake) lake=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "lake.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "lake.sh: $*" >&2; }

if [ ! -x /usr/bin/time ]; then
    say "/usr/bin/time (GNU time) is needed for peak RSS: apt-get install time"; exit 2
fi
python3 -c 'import duckdb' 2>/dev/null || { say "installing the duckdb Python package"; pip install duckdb >&2; }

# 1. Build: the kpi binary and the DataFusion side (benches/lake.rs).
say "cargo build --release"
cargo build --release --bin kpi >&2
say "cargo bench --bench lake --no-run"
cargo bench --bench lake --no-run >&2
bench_bin=$(cargo bench --bench lake --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "lake" and m.get("executable")]
print(exe[-1] if exe else "")')
[ -n "$bench_bin" ] && [ -x "$bench_bin" ] || { say "cannot find the lake bench binary"; exit 1; }
kpi_bin=$repo/target/release/kpi

# 2. The lake: generated once per scale, reused after (a `.complete` marker says it is whole).
if [ -z "$lake" ]; then
    lake=$repo/target/bench-lakes/scale-$scale
    if [ ! -f "$lake/.complete" ]; then
        say "generating $lake (kpi gen --scale $scale --format hive)"
        tmp=$lake.tmp.$$
        rm -rf "$lake" "$tmp"
        mkdir -p "$(dirname "$lake")"
        "$kpi_bin" gen "$tmp" --scale "$scale" --format hive >&2
        touch "$tmp/.complete"
        mv "$tmp" "$lake"
    fi
fi
[ -d "$lake/orders" ] || [ -f "$lake/orders.parquet" ] || { say "$lake holds no orders table"; exit 2; }
lake=$(cd "$lake" && pwd)
results=${results:-$repo/target/bench-results/$(basename "$lake")/$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$results"
say "results in $results"
"$bench_bin" --print-floor > "$results/floor.sql"

# The files in the OS cache before anything is timed: every measurement reads them warm.
find "$lake" -type f -name '*.parquet' -exec cat {} + > /dev/null

# 3. Rounds: every measurement once per round, each in its own process, under GNU time
#    (wall seconds and peak RSS in KiB). Interleaving the rounds spreads the noise of a
#    shared machine over all measurements alike.
timed() { # NAME ROUND COMMAND...: stdout to NAME.ROUND.out, "secs KiB" to NAME.ROUND.time
    local name=$1 round=$2; shift 2
    /usr/bin/time -f '%e %M' -o "$results/$name.$round.time" "$@" > "$results/$name.$round.out" \
        2> "$results/$name.$round.err" || {
        say "$name failed:"; cat "$results/$name.$round.err" >&2; exit 1; }
}
for round in $(seq 1 "$runs"); do
    say "round $round of $runs"
    timed kpi "$round" "$kpi_bin" run --data "$lake" --from 2024-01-01 --to 2026-01-01 \
        --format csv --out "$results/kpi.csv"
    timed df_floor "$round" "$bench_bin" --data "$lake" --mode floor --runs 1
    timed df_sql "$round" "$bench_bin" --data "$lake" --mode sql --sql "$repo/bench/kpis.sql" \
        --runs 1 --values "$results/df_values.csv" --check "$results/kpi.csv"
    timed duck_floor "$round" python3 "$repo/bench/duck.py" --lake "$lake" --mode floor \
        --sql "$results/floor.sql" --runs 1
    timed duck_sql "$round" python3 "$repo/bench/duck.py" --lake "$lake" --mode sql \
        --sql "$repo/bench/kpis.sql" --runs 1 --values "$results/duck_values.csv"
done

# 4. The table.
python3 "$repo/bench/report.py" "$results" "$lake" "$runs" | tee "$results/table.txt"
