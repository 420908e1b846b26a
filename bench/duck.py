#!/usr/bin/env python3
"""DuckDB side of bench/lake.sh: the scan floor and the hand-written KPI SQL over a lake.

    duck.py --lake DIR --mode floor --sql FLOOR.sql [--runs N]
    duck.py --lake DIR --mode sql   --sql bench/kpis.sql [--runs N] [--values OUT.csv]

Each table of the data root becomes a view over read_parquet (hive partitions for a
folder), so the very SQL text that DataFusion runs runs here. Every run opens a fresh
connection (as every kpi run is a fresh process); the files stay in the OS cache.
Prints JSON lines: one per query per run, then a summary per run and overall, the same
shape as `benches/lake.rs`.
"""

import argparse
import json
import os
import sys
import time


def blocks(path):
    """(kind, name, empty_zero, sql) for each `-- setup`, `-- kpi: NAME` or `-- table: NAME`
    block; other `--` lines are comments."""
    out, cur = [], None
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        head = None
        if s == "-- setup":
            head = ("setup", "setup", False)
        elif s.startswith("-- kpi:") or s.startswith("-- table:"):
            kind, rest = s[3:].split(":", 1)
            words = rest.split()
            head = (kind, words[0], "empty=0" in words[1:])
        if head:
            cur = [*head, []]
            out.append(cur)
        elif cur is not None and not s.startswith("--"):
            cur[3].append(line.rstrip("\n"))
    return [(k, n, z, "\n".join(q).strip().rstrip(";")) for k, n, z, q in out]


def views(con, lake):
    for name in sorted(os.listdir(lake)):
        if name.startswith((".", "_")):
            continue
        path = os.path.join(lake, name)
        if os.path.isdir(path):
            src = f"read_parquet('{path}/**/*.parquet', hive_partitioning = true)"
        elif name.endswith(".parquet"):
            name = name[: -len(".parquet")]
            src = f"read_parquet('{path}')"
        else:
            continue
        con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM {src}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--mode", choices=["floor", "sql"], required=True)
    ap.add_argument("--sql", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--values", help="write the KPI values (kpi,period,value) of the last run here")
    ap.add_argument("--threads", type=int)
    a = ap.parse_args()
    try:
        import duckdb
    except ImportError:
        sys.exit("duck.py: the Python package duckdb is missing (pip install duckdb)")
    lake = os.path.abspath(a.lake)
    queries = blocks(a.sql)
    months = [f"{2024 + i // 12}-{i % 12 + 1:02d}-01" for i in range(24)]
    totals, values = [], []
    for run in range(a.runs):
        t0 = time.perf_counter()
        con = duckdb.connect()
        # Its progress bar writes to stdout, between the JSON lines.
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        if a.threads:
            con.execute(f"SET threads = {a.threads}")
        views(con, lake)
        values = {}
        for kind, name, zero, q in queries:
            t = time.perf_counter()
            rows = con.execute(q).fetchall()
            secs = time.perf_counter() - t
            if kind == "setup":
                continue
            if kind == "kpi":
                got = {s.strftime("%Y-%m-%d"): v for s, v in rows}
                # A month without rows: 0 for counts and sums, else NULL.
                values[name] = {m: got.get(m, 0.0 if zero else None) for m in months}
            # A floor query's count(*), or the months a KPI query returned.
            n = rows[0][0] if kind == "table" else len(rows)
            print(json.dumps({"engine": "duckdb", "mode": a.mode, "run": run, "query": name,
                              "secs": secs, "rows": n}), flush=True)
        con.close()
        total = time.perf_counter() - t0
        totals.append(total)
        print(json.dumps({"engine": "duckdb", "mode": a.mode, "run": run, "total": total}), flush=True)
    ordered = sorted(totals)
    print(json.dumps({"engine": "duckdb", "mode": a.mode, "runs": a.runs, "best": ordered[0],
                      "median": ordered[len(ordered) // 2], "version": duckdb.__version__}), flush=True)
    if a.values:
        with open(a.values, "w", encoding="utf-8") as f:
            f.write("kpi,period,value\n")
            for name in sorted(values):
                for m, v in values[name].items():
                    f.write(f"{name},{m},{'' if v is None else repr(float(v))}\n")


if __name__ == "__main__":
    main()
