"""Record what real dbt-duckdb does with the parity fixture projects.

For each project in tests/fixtures/dbt_projects/ listed in PROJECTS below,
this script copies the project to a temporary folder, runs the dbt commands of
its STEPS there (the working directory is the copy, so the relative `path:` in
profiles.yml and relative external_location paths resolve inside it), and after
every step records, from the DuckDB file dbt wrote and from dbt's
target/run_results.json and target/manifest.json:

* every table and view in the database: database.schema.identifier, table or
  view, column names and DuckDB types in order, row count, and the content
  checksum of tests/dbt_parity/checksum.py;
* every executed node's status (seeds, models, tests), with the failures count
  of tests and the compiled SQL;
* the manifest's view of models, seeds and tests (names, relation names,
  materializations, dependencies, rendered descriptions) and the disabled
  nodes;
* the versions of dbt-core, dbt-duckdb and duckdb.

The result goes to tests/fixtures/dbt_projects/<name>/expected_dbt_results.json.
The fixture folders themselves are never written to, apart from that file.

How to regenerate
-----------------
    python3 -m venv /work/dbt-venv
    # dbt-core 1.12 needs a wheel fetched from GitHub at install time; 1.11 does not
    /work/dbt-venv/bin/pip install "dbt-duckdb==1.11.1" "dbt-core>=1.11,<1.12"
    /work/dbt-venv/bin/python tests/dbt_parity/record_dbt_results.py \\
        --check-with /work/main/.venv/bin/python

Options:
    --project NAME        only this project (repeatable; default: all)
    --check-with PYTHON   after recording, recompute every relation's figures
                          with checksum.py under another Python/duckdb (e.g.
                          wfsql's .venv) on a copy of each database file and
                          fail if anything differs (repeatable).  When that
                          duckdb cannot read the file, a copy in its storage
                          version is made first.
    --keep-workdir        leave the temporary dbt run folders in place and
                          print where they are.

Run it with the dbt virtualenv's Python: it runs `dbt` from the same folder as
sys.executable.  It needs no network access.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import checksum  # noqa: E402  (tests/dbt_parity/checksum.py)

REPO = HERE.parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "dbt_projects"
OUTPUT_NAME = "expected_dbt_results.json"

# Environment variables the fixture projects read with env_var(); they are
# removed so that the defaults written in the models are used.
PROJECT_ENV_VARS = ["EVENTS_REGION"]

# name -> database file name (from profiles.yml) and the dbt commands to run,
# in order; the state of the database is recorded after every step.
PROJECTS = {
    "shop": {
        "database_file": "shop.duckdb",
        "steps": [
            {"name": "build", "args": ["build"]},
        ],
    },
    "events": {
        "database_file": "events.duckdb",
        "steps": [
            # first build: var max_batch defaults to 1, so only batch 1 of
            # raw_events reaches the incremental model (a full build of it)
            {"name": "build", "args": ["build"]},
            # second run: batch 2 arrives; fct_events runs incrementally
            # (is_incremental() true, delete+insert on event_id)
            {"name": "incremental_run", "args": ["run", "--vars", "{max_batch: 2}"]},
        ],
    },
}

# Relations with at most this many rows also get their rows recorded as text.
SMALL_RELATION_ROWS = 10

# Left out of the temporary copy (outputs of earlier runs, the recording).
IGNORE = shutil.ignore_patterns(
    OUTPUT_NAME, "target", "logs", "dbt_packages", "*.duckdb", "*.duckdb.wal", "__pycache__"
)


def versions() -> dict:
    def v(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "dbt-core": v("dbt-core"),
        "dbt-adapters": v("dbt-adapters"),
        "dbt-duckdb": v("dbt-duckdb"),
        "duckdb": duckdb.__version__,
        "python": platform.python_version(),
    }


def dbt_env() -> dict:
    env = dict(os.environ)
    for name in PROJECT_ENV_VARS:
        env.pop(name, None)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env["DBT_VERSION_CHECK"] = "false"
    env["NO_COLOR"] = "1"
    return env


def run_dbt(workdir: Path, args: list[str]) -> None:
    dbt = Path(sys.executable).with_name("dbt")
    cmd = [str(dbt), *args, "--project-dir", ".", "--profiles-dir", "."]
    proc = subprocess.run(cmd, cwd=workdir, env=dbt_env(), capture_output=True, text=True)
    sys.stdout.write(proc.stdout[-4000:])
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"dbt {' '.join(args)} crashed (exit {proc.returncode})")
    # exit 1 means some node failed: still recorded, the run_results tell which


def unquote_relation(name: str | None) -> str | None:
    """'"shop"."main"."orders"' -> 'shop.main.orders'."""
    if not name:
        return None
    return ".".join(part.strip('"') for part in name.split("."))


def describe_nodes(manifest: dict) -> tuple[dict, list]:
    nodes = {}
    for uid, n in sorted(manifest["nodes"].items()):
        if n["resource_type"] not in ("model", "seed", "test"):
            continue
        cfg = n.get("config", {})
        entry = {
            "name": n["name"],
            "resource_type": n["resource_type"],
            "original_file_path": n["original_file_path"],
            "materialized": cfg.get("materialized"),
            "database": n.get("database"),
            "schema": n.get("schema"),
            "alias": n.get("alias"),
            "relation_name": n.get("relation_name"),
            "depends_on": sorted(n.get("depends_on", {}).get("nodes", [])),
            "tags": sorted(n.get("tags", [])),
        }
        if n["resource_type"] in ("model", "seed"):
            entry["description"] = n.get("description", "")
            entry["columns"] = {c: col.get("description", "") for c, col in n.get("columns", {}).items()}
        if n["resource_type"] == "model" and cfg.get("materialized") == "incremental":
            entry["unique_key"] = cfg.get("unique_key")
            entry["incremental_strategy"] = cfg.get("incremental_strategy")
        if n["resource_type"] == "seed":
            entry["column_types"] = cfg.get("column_types", {})
        if n["resource_type"] == "test":
            meta = n.get("test_metadata") or {}
            kwargs = {k: v for k, v in meta.get("kwargs", {}).items() if k != "model"}
            entry.update(
                {
                    "test_type": "generic" if meta else "singular",
                    "test_name": meta.get("name"),
                    "test_kwargs": kwargs,
                    "attached_node": n.get("attached_node"),
                    "column_name": n.get("column_name"),
                    "severity": cfg.get("severity"),
                }
            )
        nodes[uid] = entry
    for uid, n in sorted(manifest.get("sources", {}).items()):
        nodes[uid] = {
            "name": n["name"],
            "resource_type": "source",
            "source_name": n["source_name"],
            "original_file_path": n["original_file_path"],
            "database": n.get("database"),
            "schema": n.get("schema"),
            "identifier": n.get("identifier"),
            "relation_name": n.get("relation_name"),
            "meta": n.get("meta", {}),
            "source_meta": n.get("source_meta", {}),
        }
    disabled = sorted(manifest.get("disabled", {}))
    return nodes, disabled


def describe_results(run_results: dict, manifest: dict) -> list:
    out = []
    for r in run_results["results"]:
        uid = r["unique_id"]
        node = manifest["nodes"].get(uid, {})
        out.append(
            {
                "unique_id": uid,
                "name": node.get("name"),
                "resource_type": node.get("resource_type"),
                "status": r["status"],
                "failures": r.get("failures"),
                "message": r.get("message"),
                "relation_name": r.get("relation_name"),
                "compiled_code": r.get("compiled_code"),
            }
        )
    return out


def describe_relations(db_file: Path, manifest: dict) -> list:
    # Views over an external_location source hold the relative CSV path, so
    # they must be read from the dbt run folder: the caller chdir()s there.
    by_relation = {}
    for uid, n in manifest["nodes"].items():
        if n.get("relation_name") and n["resource_type"] in ("model", "seed"):
            by_relation[unquote_relation(n["relation_name"])] = uid
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        database = con.execute("select current_database()").fetchall()[0][0]
        out = []
        for db, schema, ident, _kind in checksum.list_relations(con, database):
            summary = checksum.relation_summary(con, db, schema, ident)
            summary["dbt_unique_id"] = by_relation.get(summary["relation"])
            if summary["row_count"] <= SMALL_RELATION_ROWS:
                # for reading mismatches: each row as DuckDB casts it to text
                name = checksum.relation_sql_name(db, schema, ident)
                rows = con.execute(f"select cast(t as varchar) as r from {name} as t order by r").fetchall()
                summary["rows_as_text"] = [r[0] for r in rows]
            out.append(summary)
        return out
    finally:
        con.close()


CHECK_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import duckdb, checksum
con = duckdb.connect(sys.argv[2], read_only=True)
rels = json.loads(sys.argv[3])
out = {"duckdb": duckdb.__version__, "relations": [checksum.relation_summary(con, *r) for r in rels]}
print(json.dumps(out))
"""


def other_duckdb_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import duckdb; print(duckdb.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def compatible_copy(src: Path, dest_dir: Path, version: str) -> Path:
    """Copy src to dest_dir/<same name>, in the storage format of `version`
    (e.g. '1.5.6' -> storage_version 'v1.5.0') when it is older than ours."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    major, minor = version.split(".")[:2]
    con = duckdb.connect()
    try:
        con.execute(f"attach '{src}' as parity_src (read_only)")
        con.execute(f"attach '{dest}' as parity_dst (storage_version 'v{major}.{minor}.0')")
        con.execute("copy from database parity_src to parity_dst")
    finally:
        con.close()
    return dest


def crosscheck(python: str, db_file: Path, relations: list, scratch: Path) -> dict:
    """Recompute every relation's summary under another Python/duckdb (run in
    the dbt run folder, for the views that read relative CSV paths)."""
    version = other_duckdb_version(python)
    scratch.mkdir(parents=True, exist_ok=True)
    if version == duckdb.__version__:
        copy = scratch / db_file.name
        shutil.copy2(db_file, copy)
    else:
        copy = compatible_copy(db_file, scratch, version)
    rels = [[r["database"], r["schema"], r["identifier"]] for r in relations]
    proc = subprocess.run(
        [python, "-c", CHECK_SCRIPT, str(HERE), str(copy), json.dumps(rels)],
        capture_output=True,
        text=True,
        cwd=db_file.parent,
    )
    if proc.returncode != 0:
        raise SystemExit(f"checksum under {python} failed:\n{proc.stderr}")
    theirs = json.loads(proc.stdout)
    mismatches = [
        mine["relation"]
        for mine, other in zip(relations, theirs["relations"], strict=True)
        if {k: mine[k] for k in other} != other
    ]
    return {
        "duckdb": theirs["duckdb"],
        "file": "same file copied"
        if version == duckdb.__version__
        else f"copy in storage_version v{'.'.join(version.split('.')[:2])}.0",
        "relations_checked": len(rels),
        "mismatches": mismatches,
    }


def record(name: str, check_with: list[str], keep: bool) -> Path:
    spec = PROJECTS[name]
    src = FIXTURES / name
    tmp = Path(tempfile.mkdtemp(prefix=f"dbt_parity_{name}_"))
    workdir = tmp / name
    shutil.copytree(src, workdir, ignore=IGNORE)
    db_file = workdir / spec["database_file"]
    result = {
        "project": name,
        "generated_by": "tests/dbt_parity/record_dbt_results.py",
        "versions": versions(),
        "checksum": {
            "helper": "tests/dbt_parity/checksum.py (relation_checksum / relation_summary)",
            "sql": checksum.CHECKSUM_SQL.strip(),
        },
        "database_file": spec["database_file"],
        "env_vars_unset": PROJECT_ENV_VARS,
        "steps": [],
        "checksum_crosscheck": [],
    }
    try:
        for step in spec["steps"]:
            print(f"== {name}: dbt {' '.join(step['args'])}", flush=True)
            run_dbt(workdir, step["args"])
            manifest = json.loads((workdir / "target" / "manifest.json").read_text())
            run_results = json.loads((workdir / "target" / "run_results.json").read_text())
            cwd = os.getcwd()
            os.chdir(workdir)
            try:
                relations = describe_relations(db_file, manifest)
            finally:
                os.chdir(cwd)
            result["steps"].append(
                {
                    "name": step["name"],
                    "dbt_command": ["dbt", *step["args"]],
                    "relations": relations,
                    "results": describe_results(run_results, manifest),
                }
            )
            nodes, disabled = describe_nodes(manifest)
            result["nodes"] = nodes
            result["disabled"] = disabled
            for i, python in enumerate(check_with):
                check = crosscheck(python, db_file, relations, tmp / f"check_{step['name']}_{i}")
                check["step"] = step["name"]
                print(
                    f"   checksums under duckdb {check['duckdb']}: "
                    f"{check['relations_checked']} relations, mismatches: {check['mismatches']}"
                )
                if check["mismatches"]:
                    raise SystemExit(f"checksum mismatch under {python}: {check['mismatches']}")
                result["checksum_crosscheck"].append(check)
    finally:
        if keep:
            print(f"   dbt run folder kept: {workdir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out = src / OUTPUT_NAME
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    print(f"   wrote {out.relative_to(REPO)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", action="append", choices=sorted(PROJECTS))
    ap.add_argument("--check-with", action="append", default=[], metavar="PYTHON")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args()
    for name in args.project or list(PROJECTS):
        record(name, args.check_with, args.keep_workdir)


if __name__ == "__main__":
    main()
