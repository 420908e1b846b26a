#!/usr/bin/env python3
"""The table of bench/lake.sh, from the raw timings it wrote to RESULTS.

    report.py RESULTS LAKE ROUNDS

Per measurement: the best and the median of the rounds (kpi: wall time of the process;
the others: their in-process total, session setup included), the peak RSS over the
rounds, and ratios to the scan floors measured in the same run. Then the checks: kpi's
values and DuckDB's against the DataFusion hand SQL, per (KPI, month) cell.
"""

import csv
import json
import os
import subprocess
import sys


def rounds(results, name, n):
    """[(seconds, peak RSS in MiB, json lines)] for each round of a measurement."""
    out = []
    for r in range(1, n + 1):
        with open(os.path.join(results, f"{name}.{r}.time"), encoding="utf-8") as f:
            wall, kib = f.read().split("\n")[-2].split()  # GNU time may prefix a status line
        lines = []
        path = os.path.join(results, f"{name}.{r}.out")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.startswith("{")]
        totals = [d["total"] for d in lines if "total" in d]
        secs = totals[0] if totals else float(wall)
        out.append((secs, int(kib) / 1024, lines))
    return out


def values(path):
    with open(path, encoding="utf-8") as f:
        return {(r["kpi"], r["period"]): (float(r["value"]) if r["value"] else None)
                for r in csv.DictReader(f)}


def differing(got, want):
    def close(a, b):
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    bad = [k for k, w in want.items()
           if not ((got.get(k) is None and w is None)
                   or (got.get(k) is not None and w is not None and close(got[k], w)))]
    return len(want), bad


def main():
    results, lake, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    m = {name: rounds(results, name, n)
         for name in ["kpi", "df_floor", "df_sql", "duck_floor", "duck_sql"]}

    def best(name):
        return min(s for s, _, _ in m[name])

    def median(name):
        xs = sorted(s for s, _, _ in m[name])
        return xs[len(xs) // 2]

    def rss(name):
        return max(r for _, r, _ in m[name])

    floor_rows = {d["query"]: d["rows"] for d in m["df_floor"][0][2] if "query" in d}
    size = subprocess.run(["du", "-sh", lake], capture_output=True, text=True).stdout.split()
    cores = os.cpu_count()
    print(f"kpi lake benchmark: {lake}")
    print(f"  {floor_rows.get('orders', 0):,} orders, {sum(floor_rows.values()):,} rows in the"
          f" {len(floor_rows)} tables read, {size[0] if size else '?'} on disk; {cores} cores;"
          f" best of {n} round(s)")
    print("  39 KPIs by month over 2024-2025 (24 months)")
    print()
    df_floor, duck_floor = best("df_floor"), best("duck_floor")
    rows = [
        ("scan floor, DataFusion", "df_floor", df_floor),
        ("kpi run", "kpi", df_floor),
        ("hand SQL, DataFusion (39 queries)", "df_sql", df_floor),
        ("scan floor, DuckDB", "duck_floor", duck_floor),
        ("hand SQL, DuckDB (39 queries)", "duck_sql", duck_floor),
    ]
    head = f"  {'measurement':<34} {'best s':>8} {'median s':>9} {'peak RSS':>9} {'/ DF floor':>11} {'/ own floor':>12}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for label, name, own in rows:
        b = best(name)
        print(f"  {label:<34} {b:>8.3f} {median(name):>9.3f} {rss(name):>6.0f} MB"
              f" {b / df_floor:>10.2f}x {b / own:>11.2f}x")
    print()
    print("  own floor: the scan floor of the engine that ran it (DataFusion for kpi).")
    print("  kpi: wall time of `kpi run`; the others: in-process, session and table setup included.")
    print("  peak RSS of DuckDB includes the Python interpreter and module (~65 MB idle).")

    print()
    checks = [d for d in m["df_sql"][-1][2] if "check" in d]
    if checks:
        c = checks[0]
        print(f"  check kpi vs DataFusion hand SQL: {c['differ']} of {c['cells']} (KPI, month)"
              f" cells differ by more than 1e-9 relative")
        for e in c["examples"]:
            print(f"    {e}")
    df_values = values(os.path.join(results, "df_values.csv"))
    cells, bad = differing(values(os.path.join(results, "duck_values.csv")), df_values)
    print(f"  check DuckDB vs DataFusion hand SQL: {len(bad)} of {cells} cells differ by more"
          f" than 1e-9 relative")
    for k in bad[:10]:
        print(f"    {k[0]} {k[1]}")

    # Per KPI, the best round of each engine's hand SQL, to a file.
    per = {}
    for engine, name in [("datafusion", "df_sql"), ("duckdb", "duck_sql")]:
        for _, _, lines in m[name]:
            for d in lines:
                if "query" in d:
                    key = (d["query"], engine)
                    per[key] = min(per.get(key, float("inf")), d["secs"])
    path = os.path.join(results, "per_kpi.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("kpi,datafusion_s,duckdb_s\n")
        for k in sorted({k for k, _ in per}):
            f.write(f"{k},{per.get((k, 'datafusion'), '')},{per.get((k, 'duckdb'), '')}\n")
    print(f"  per-KPI times of the hand SQL: {path}")


if __name__ == "__main__":
    main()
