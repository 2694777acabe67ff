"""The one place that talks to DuckDB: connections, a run lock, the catalog, atomic statements."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from wfsql.errors import DatabaseError, DatabaseLockedError
from wfsql.nodes import Relation, quote_identifier

STATE_SCHEMA = "_wfsql"


@dataclass(frozen=True)
class ExistingRelation:
    schema: str
    name: str
    type: str  # 'table' | 'view'


def first_row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row, consuming the whole result: DuckDB refuses new work while a result is unfinished."""
    rows = result.fetchall()
    return rows[0] if rows else None


class RunLock:
    """An exclusive lock beside the database file, naming the process that holds it."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._lock = None if database == ":memory:" else FileLock(database + ".wfsql.lock")
        self._info = Path(database + ".wfsql.pid") if database != ":memory:" else None

    def __enter__(self) -> RunLock:
        if self._lock is None:
            return self
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            holder = self._info.read_text().strip() if self._info and self._info.exists() else "another process"
            raise DatabaseLockedError(
                f"another wfsql command ({holder}) is running on {self.database}",
                hint="wait for it to finish, or point this command at another database with --target",
            ) from None
        assert self._info is not None
        self._info.write_text(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            if self._info is not None:
                self._info.unlink(missing_ok=True)
            self._lock.release()


class DuckDBAdapter:
    """Owns the DuckDB connection; hands each worker thread its own cursor."""

    def __init__(self, database: str, *, read_only: bool = False, search_path: Path | None = None) -> None:
        self.database = database
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = duckdb.connect(database, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise DatabaseLockedError(
                    f"{database} is open in another process: {str(exc).splitlines()[0]}",
                    hint="close the other program (a notebook, a DuckDB shell, another wfsql) and retry",
                ) from None
            raise DatabaseError(str(exc), hint=f"check that {database} is a DuckDB file you can write") from None
        if search_path is not None:
            # Relative file paths in SQL (read_csv('data/x.csv')) resolve against the project, not the cwd.
            literal = str(search_path).replace("'", "''")
            self.connection.execute(f"set global file_search_path = '{literal}'")
        self._local = threading.local()
        self._catalog: dict[tuple[str, str], ExistingRelation] | None = None
        self._catalog_lock = threading.Lock()
        self._schemas: set[str] = set()

    def close(self) -> None:
        self.connection.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A per-thread cursor: DuckDB connections are not safe to share between threads."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self.connection.cursor()
            self._local.cursor = cursor
        return cursor

    # -------------------------------------------------------------------------------- catalog

    def catalog(self) -> dict[tuple[str, str], ExistingRelation]:
        """Every user table and view, read once per run and kept current as we create relations.

        Worker threads call this too, so it only ever queries through the calling thread's cursor.
        """
        if self._catalog is None:
            rows = (
                self.cursor()
                .execute(
                    "select schema_name, table_name, 'table' from duckdb_tables() where not internal "
                    "and database_name = current_database() "
                    "union all select schema_name, view_name, 'view' from duckdb_views() where not internal "
                    "and database_name = current_database()"
                )
                .fetchall()
            )
            self._catalog = {(s.lower(), n.lower()): ExistingRelation(s, n, t) for s, n, t in rows}
            self._schemas = {
                row[0].lower()
                for row in self.cursor()
                .execute("select schema_name from duckdb_schemas() where database_name = current_database()")
                .fetchall()
            }
        return self._catalog

    def existing(self, relation: Relation) -> ExistingRelation | None:
        return self.catalog().get((relation.schema.lower(), relation.identifier.lower()))

    def remember(self, relation: Relation, relation_type: str | None) -> None:
        with self._catalog_lock:
            key = (relation.schema.lower(), relation.identifier.lower())
            if relation_type is None:
                self.catalog().pop(key, None)
            else:
                self.catalog()[key] = ExistingRelation(relation.schema, relation.identifier, relation_type)

    def ensure_schemas(self, schemas: Sequence[str]) -> None:
        self.catalog()
        with self._catalog_lock:
            for schema in schemas:
                if schema.lower() not in self._schemas:
                    self.cursor().execute(f"create schema if not exists {quote_identifier(schema)}")
                    self._schemas.add(schema.lower())

    def columns(self, relation: Relation) -> list[tuple[str, str]]:
        rows = (
            self.cursor()
            .execute(
                "select column_name, data_type from duckdb_columns() where database_name = current_database() "
                "and schema_name = ? and table_name = ? order by column_index",
                [relation.schema, relation.identifier],
            )
            .fetchall()
        )
        return [(str(name), str(dtype)) for name, dtype in rows]

    # ----------------------------------------------------------------------------- execution

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return self.cursor().execute(sql, parameters)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Everything inside commits together or not at all."""
        cursor = self.cursor()
        cursor.execute("begin transaction")
        try:
            yield cursor
        except BaseException:
            with suppress(duckdb.Error):
                cursor.execute("rollback")
            raise
        cursor.execute("commit")

    def query(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        relation = self.cursor().sql(sql)
        if limit is not None:
            relation = relation.limit(limit)
        return list(relation.columns), relation.fetchall()
