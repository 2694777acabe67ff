"""Self-checks of the dbt parity fixtures and their checksum helper.

Needs only duckdb (no dbt, no wfsql): the seed CSVs, loaded with the column
types dbt-duckdb gave them, must reproduce the checksums recorded from the
real dbt run in expected_dbt_results.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from checksum import CHECKSUM_SQL, quote_ident, relation_checksum, relation_summary

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dbt_projects"
PROJECTS = sorted(p.parent.name for p in FIXTURES.glob("*/expected_dbt_results.json"))


def _expected(project: str) -> dict:
    return json.loads((FIXTURES / project / "expected_dbt_results.json").read_text())


def test_fixtures_are_recorded():
    assert {"shop", "events"} <= set(PROJECTS)


def test_checksum_ignores_row_order_and_counts_duplicates():
    con = duckdb.connect()
    con.execute("create table a as select * from (values (1, 'x'), (2, 'y'), (2, 'y')) v(id, s)")
    con.execute("create table b as select * from a order by id desc")
    con.execute("create table c as select distinct * from a")
    assert relation_checksum(con, "a") == relation_checksum(con, "b")
    assert relation_checksum(con, "a")["row_count"] == 3
    assert relation_checksum(con, "a")["checksum"] != relation_checksum(con, "c")["checksum"]


def test_checksum_of_empty_relation_is_md5_of_empty_string():
    con = duckdb.connect()
    con.execute("create table e (id integer)")
    assert relation_checksum(con, "e") == {"row_count": 0, "checksum": "d41d8cd98f00b204e9800998ecf8427e"}


def test_checksum_sees_types_and_names():
    con = duckdb.connect()
    con.execute("create table d as select 1.5::decimal(10,2) as x")
    con.execute("create table f as select 1.5::double as x")
    con.execute("create table g as select 1.5::decimal(10,2) as y")
    sums = {t: relation_checksum(con, t)["checksum"] for t in "dfg"}
    assert len(set(sums.values())) == 3


@pytest.mark.parametrize("project", PROJECTS)
def test_recorded_checksum_sql_matches_helper(project):
    assert _expected(project)["checksum"]["sql"] == CHECKSUM_SQL.strip()


@pytest.mark.parametrize("project", PROJECTS)
def test_seed_csvs_reproduce_recorded_checksums(project):
    """Each seed table dbt loaded = its CSV read with the recorded types."""
    expected = _expected(project)
    con = duckdb.connect()
    checked = 0
    for step in expected["steps"]:
        for rel in step["relations"]:
            if not (rel["dbt_unique_id"] or "").startswith("seed."):
                continue
            csv = FIXTURES / project / "seeds" / f"{rel['identifier']}.csv"
            columns = ", ".join(f"'{name}': '{typ}'" for name, typ in rel["columns"])
            con.execute(
                f"create or replace table {quote_ident(rel['identifier'])} as "
                f"select * from read_csv('{csv.as_posix()}', header = true, columns = {{{columns}}})"
            )
            got = relation_summary(con, "memory", "main", rel["identifier"])
            assert got["columns"] == rel["columns"]
            assert (got["row_count"], got["checksum"]) == (rel["row_count"], rel["checksum"]), rel["relation"]
            checked += 1
    assert checked
