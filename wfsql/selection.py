"""dbt's node selection grammar: `+a b+ 2+c,tag:x @d path:models/eval state:modified`.

Space separates a union, comma an intersection. Graph operators: `+x` ancestors, `x+` descendants,
`N+x`/`x+N` to depth N, `@x` descendants plus everything they need.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from wfsql.dag import DAG
from wfsql.errors import SelectionError, did_you_mean
from wfsql.nodes import Node

_ATOM = re.compile(r"^(?P<at>@)?(?:(?P<up>\d*)\+)?(?P<body>[^+]+?)(?:\+(?P<down>\d*))?$")
METHODS = ("tag", "path", "resource_type", "config", "state", "source", "fqn", "file", "test_type", "package")


@dataclass(frozen=True)
class SelectionContext:
    nodes: Mapping[str, Node]
    dag: DAG
    project_name: str
    model_paths: Sequence[str] = ("models",)
    state: Mapping[str, str] | None = None  # unique_id → fingerprint last built


def select_nodes(
    context: SelectionContext,
    select: Sequence[str] | None,
    exclude: Sequence[str] | None = None,
    *,
    resource_types: Iterable[str] | None = None,
) -> set[str]:
    """The unique ids chosen by --select minus --exclude (everything when select is empty)."""
    candidates = {
        uid
        for uid, node in context.nodes.items()
        if resource_types is None or node.resource_type in set(resource_types)
    }
    chosen = _union(context, select) if select else set(context.nodes)
    if exclude:
        chosen -= _union(context, exclude)
    return chosen & candidates


def _union(context: SelectionContext, specs: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for spec in specs:
        for token in spec.split():
            out |= _intersection(context, token)
    return out


def _intersection(context: SelectionContext, token: str) -> set[str]:
    parts = [p for p in token.split(",") if p]
    result: set[str] | None = None
    for part in parts:
        selected = _atom(context, part)
        result = selected if result is None else result & selected
    return result or set()


def _atom(context: SelectionContext, text: str) -> set[str]:
    match = _ATOM.match(text)
    if not match:
        raise SelectionError(f"cannot read selector {text!r}", hint="e.g. +model, model+, 2+model, tag:x, @model")
    body = match.group("body")
    seeds = _match(context, body)
    if not seeds and body.startswith("state:"):
        return set()  # nothing changed since the last build: a normal answer, not a typo
    if not seeds:
        if body.startswith("tag:"):  # a misspelt tag is compared with the tags, not with node names
            suggestion = did_you_mean(body, sorted({f"tag:{t}" for n in context.nodes.values() for t in n.tags}))
        else:
            suggestion = did_you_mean(body, sorted({n.name for n in context.nodes.values()}))
        raise SelectionError(
            f"selector {text!r} matches no node" + (f"; {suggestion}" if suggestion else ""),
            hint="`wfsql ls` lists the nodes; selectors take names, tag:, path:, source:, state:modified",
        )
    selected = set(seeds)
    dag = context.dag
    if match.group("at"):
        for uid in seeds:
            descendants = dag.descendants(uid)
            selected |= descendants
            for node in descendants | {uid}:
                selected |= dag.ancestors(node)
        return selected
    up, down = match.group("up"), match.group("down")
    for uid in seeds:
        if up is not None:
            selected |= dag.ancestors(uid, int(up) if up else None)
        if down is not None:
            selected |= dag.descendants(uid, int(down) if down else None)
    return selected


def _match(context: SelectionContext, body: str) -> set[str]:
    method, _, value = body.partition(":") if ":" in body else ("", "", body)
    method_name, _, argument = method.partition(".")
    if method and method_name not in METHODS:
        raise SelectionError(
            f"unknown selector method {method_name!r}"
            + (f"; {s}" if (s := did_you_mean(method_name, METHODS)) else ""),
            hint="methods: " + ", ".join(METHODS),
        )
    matched: set[str] = set()
    for uid, node in context.nodes.items():
        if _matches(context, node, method_name, argument, value):
            matched.add(uid)
    return matched


def _matches(context: SelectionContext, node: Node, method: str, argument: str, value: str) -> bool:
    if method == "tag":
        return any(fnmatch.fnmatchcase(tag, value) for tag in node.tags)
    if method in ("path", "file"):
        path = PurePosixPath(node.path)
        target = value.rstrip("/")
        return (
            node.path == target
            or node.path.startswith(target + "/")
            or path.match(target)
            or (method == "file" and path.name == target)
        )
    if method == "resource_type":
        return node.resource_type == value
    if method == "config":
        actual = node.config.get(argument)
        if isinstance(actual, list):
            return value in map(str, actual)
        return str(actual).lower() == value.lower() if actual is not None else False
    if method == "state":
        if value not in ("modified", "new"):
            raise SelectionError(f"unknown state selector {value!r}", hint="use state:modified or state:new")
        state = context.state or {}
        if value == "new":
            return node.unique_id not in state
        return node.resource_type in ("model", "seed") and state.get(node.unique_id) != node.fingerprint
    if method == "source":
        source_name = getattr(node, "source_name", None)
        if node.resource_type != "source" or source_name is None:
            return False
        return fnmatch.fnmatchcase(f"{source_name}.{node.name}", value) or source_name == value
    if method == "test_type":
        return node.resource_type == "test" and getattr(node, "test_type", None) == value
    if method == "package":
        return value == context.project_name
    return _fqn_match(context, node, value)


def _fqn_match(context: SelectionContext, node: Node, value: str) -> bool:
    if "/" in value or value.endswith(".sql"):
        return _matches(context, node, "path", "", value)
    if fnmatch.fnmatchcase(node.name, value):
        return True
    if node.resource_type not in ("model", "seed", "test"):
        return False
    parts = PurePosixPath(node.path).with_suffix("").parts
    fqn = [context.project_name, *parts[1:]]
    wanted = value.split(".")
    return fqn[: len(wanted)] == wanted or fqn[1 : 1 + len(wanted)] == wanted
