"""What a rendered model's SQL reads, and whether it parses (sqlglot, DuckDB dialect)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqlAnalysis:
    """Tables a statement reads as (schema, name) — lower-cased — or the first syntax problem."""

    tables: tuple[tuple[str, str], ...] = ()
    functions: tuple[str, ...] = ()  # names of functions sqlglot does not know (UDFs, macros), lower-cased
    error: str | None = None
    line: int | None = None
    column: int | None = None


def analyze_sql(sql: str) -> SqlAnalysis:
    import sqlglot  # imported on first use: a warm compile never parses and skips its 0.2 s import
    from sqlglot import exp

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        description = str(first.get("description", exc)).split("<Token")[0].strip()
        highlight = first.get("highlight")
        if highlight:
            description += f" near {highlight!r}"
        return SqlAnalysis(error=description, line=first.get("line"), column=first.get("col"))
    except sqlglot.errors.TokenError as exc:
        return SqlAnalysis(error=f"cannot tokenize: {exc} (an unterminated quote?)")
    if len(statements) != 1:
        return SqlAnalysis(error=f"a model is one SELECT statement, found {len(statements)} statements")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        return SqlAnalysis(
            error=f"a model is a SELECT query, found {statement.key.upper()}; wfsql writes the CREATE itself"
        )
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    tables: dict[tuple[str, str], None] = {}
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function such as read_csv(...)
        name = table.name.lower()
        schema = table.db.lower()
        if not schema and name in ctes:
            continue
        tables[(schema, name)] = None
    functions = tuple(sorted({f.name.lower() for f in statement.find_all(exp.Anonymous)}))
    return SqlAnalysis(tables=tuple(tables), functions=functions)
