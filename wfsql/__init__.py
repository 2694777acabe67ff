"""wfsql: the WildFeedback method as a declarative, dbt-style SQL framework on DuckDB."""

__version__ = "0.1.0"
