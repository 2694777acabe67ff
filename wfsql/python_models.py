"""Python models: `models/**/*.py` files defining `model(wf, con)`, for steps SQL is bad at (k-means).

```python
def model(wf, con):
    wf.config(materialized="table")
    rows = wf.ref("eval_candidates").fetch_arrow_table()   # a DuckDB relation
    ...
    return table                                            # pyarrow Table, DuckDB relation, or list of dicts
```

Dependencies come from literal `wf.ref('x')` / `wf.source('a', 'b')` calls, read without running the
file, so compile stays pure. The result is written like a table model: one transaction, state row.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from wfsql.errors import CompileError, WfsqlError
from wfsql.renderer import RenderResult, ref_placeholder, source_placeholder

_REF = re.compile(r"""\.ref\(\s*['"](\w+)['"]\s*\)""")
_SOURCE = re.compile(r"""\.source\(\s*['"](\w+)['"]\s*,\s*['"](\w+)['"]\s*\)""")
_CONFIG = re.compile(r"""\.config\(([^()]*)\)""")
_LINK_LINE = re.compile(r"^(ref|src) (\S+)=(.*)$")


def render_python_model(name: str, text: str) -> RenderResult:
    """A RenderResult whose 'SQL' lists the placeholders of every ref/source, for the linker to resolve."""
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise CompileError(f"Python syntax error: {exc.msg}", hint=f"line {exc.lineno} of the model file") from None
    refs = list(dict.fromkeys(_REF.findall(text)))
    sources = list(dict.fromkeys(_SOURCE.findall(text)))
    config: dict[str, Any] = {}
    for match in _CONFIG.finditer(text):
        try:
            call = ast.parse(f"f({match.group(1)})", mode="eval").body
            assert isinstance(call, ast.Call)
            config.update({kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg})
        except (SyntaxError, ValueError, AssertionError):
            raise CompileError(f"model {name}: wf.config(...) takes literal keyword arguments only") from None
    lines = [f"ref {r}={ref_placeholder(r)}" for r in refs]
    lines += [f"src {s}.{t}={source_placeholder(s, t)}" for s, t in sources]
    return RenderResult(sql="\n".join(lines), refs=refs, sources=sources, config=config)


def parse_links(linked: str) -> dict[str, str]:
    """`ref x` / `src a.b` → the relation SQL the linker put there."""
    links = {}
    for line in linked.splitlines():
        match = _LINK_LINE.match(line)
        if match:
            links[f"{match.group(1)}:{match.group(2)}"] = match.group(3)
    return links


class PythonModelContext:
    """The `wf` object a Python model receives."""

    def __init__(self, con: Any, links: dict[str, str], variables: dict[str, Any], name: str) -> None:
        self._con = con
        self._links = links
        self._vars = variables
        self.name = name

    def ref(self, name: str) -> Any:
        relation = self._links.get(f"ref:{name}")
        if relation is None:
            raise WfsqlError(f"model {self.name}: wf.ref({name!r}) must be a literal call wfsql can see at compile")
        return self._con.sql(f"select * from {relation}")

    def source(self, source_name: str, table_name: str) -> Any:
        relation = self._links.get(f"src:{source_name}.{table_name}")
        if relation is None:
            raise WfsqlError(f"model {self.name}: wf.source({source_name!r}, {table_name!r}) is not a literal call")
        return self._con.sql(f"select * from {relation}")

    def var(self, name: str, default: Any = None) -> Any:
        return self._vars.get(name, default)

    def config(self, **_: Any) -> None:
        """Read at compile time; a no-op when the model runs."""


def run_python_model(
    con: Any, source: str, path: str, name: str, links: dict[str, str], variables: dict[str, Any]
) -> Any:
    """Execute the file and call model(wf, con); returns an Arrow table."""
    import pyarrow as pa

    namespace: dict[str, Any] = {"__name__": f"wfsql_model_{name}"}
    exec(compile(source, path, "exec"), namespace)
    function = namespace.get("model")
    if not callable(function):
        raise WfsqlError(f"{path} defines no model(wf, con) function", hint="add `def model(wf, con): ...`")
    result = function(PythonModelContext(con, links, variables, name), con)
    if hasattr(result, "fetch_arrow_table"):
        return result.fetch_arrow_table()
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, list):
        return pa.Table.from_pylist(result)
    if hasattr(result, "to_arrow"):  # polars
        return result.to_arrow()
    if type(result).__name__ == "DataFrame":  # pandas
        return pa.Table.from_pandas(result, preserve_index=False)
    raise WfsqlError(
        f"model {name} returned {type(result).__name__}",
        hint="return a DuckDB relation, a pyarrow Table, a list of dicts or a DataFrame",
    )
