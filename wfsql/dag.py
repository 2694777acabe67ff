"""A small directed acyclic graph of node ids: order, levels, ancestry and the path of a cycle."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping


class CycleError(Exception):
    """The graph has a cycle; `path` lists it from a node back to the same node."""

    def __init__(self, path: list[str]) -> None:
        super().__init__(" -> ".join(path))
        self.path = path


class DAG:
    """Edges point from parent to child; built from each node's parents."""

    def __init__(self, parents: Mapping[str, Iterable[str]]) -> None:
        self._parents: dict[str, tuple[str, ...]] = {}
        self._children: dict[str, list[str]] = {}
        for node, node_parents in parents.items():
            self._parents[node] = tuple(dict.fromkeys(p for p in node_parents if p != node))
            self._children.setdefault(node, [])
        # A copy: a parent that is not a key itself is added as a root below, which grows the dict.
        for node, node_parents in list(self._parents.items()):
            for parent in node_parents:
                self._children.setdefault(parent, []).append(node)
                self._parents.setdefault(parent, ())
        self._order: list[str] | None = None

    def __contains__(self, node: object) -> bool:
        return node in self._parents

    def __len__(self) -> int:
        return len(self._parents)

    @property
    def nodes(self) -> list[str]:
        return list(self._parents)

    def parents(self, node: str) -> tuple[str, ...]:
        return self._parents[node]

    def children(self, node: str) -> list[str]:
        return self._children[node]

    def topological_order(self) -> list[str]:
        """Kahn's algorithm, stable with respect to insertion order; raises CycleError."""
        if self._order is None:
            pending = {node: len(parents) for node, parents in self._parents.items()}
            ready = deque(node for node, count in pending.items() if count == 0)
            order: list[str] = []
            while ready:
                node = ready.popleft()
                order.append(node)
                for child in self._children[node]:
                    pending[child] -= 1
                    if pending[child] == 0:
                        ready.append(child)
            if len(order) != len(self._parents):
                raise CycleError(self.find_cycle() or [])
            self._order = order
        return self._order

    def levels(self) -> list[list[str]]:
        """Nodes grouped by depth: a node's level is one more than its deepest parent's."""
        depth: dict[str, int] = {}
        for node in self.topological_order():
            depth[node] = 1 + max((depth[p] for p in self._parents[node]), default=-1)
        grouped: list[list[str]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
        for node, level in depth.items():
            grouped[level].append(node)
        return grouped

    def find_cycle(self) -> list[str] | None:
        """One cycle as a path [a, b, ..., a], or None; iterative DFS so deep graphs do not recurse."""
        white, grey, black = 0, 1, 2
        colour = dict.fromkeys(self._parents, white)
        for start in self._parents:
            if colour[start] != white:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = [start]
            colour[start] = grey
            while stack:
                node, index = stack[-1]
                children = self._children[node]
                if index < len(children):
                    stack[-1] = (node, index + 1)
                    child = children[index]
                    if colour[child] == grey:
                        return [*path[path.index(child) :], child]
                    if colour[child] == white:
                        colour[child] = grey
                        stack.append((child, 0))
                        path.append(child)
                else:
                    colour[node] = black
                    stack.pop()
                    path.pop()
        return None

    def ancestors(self, node: str, depth: int | None = None) -> set[str]:
        return self._walk(node, self._parents, depth)

    def descendants(self, node: str, depth: int | None = None) -> set[str]:
        return self._walk(node, self._children, depth)

    @staticmethod
    def _walk(start: str, edges: Mapping[str, Iterable[str]], depth: int | None) -> set[str]:
        seen: set[str] = set()
        frontier = [start]
        level = 0
        while frontier and (depth is None or level < depth):
            level += 1
            next_frontier = []
            for node in frontier:
                for neighbour in edges[node]:
                    if neighbour not in seen:
                        seen.add(neighbour)
                        next_frontier.append(neighbour)
            frontier = next_frontier
        seen.discard(start)
        return seen

    def subgraph(self, keep: Iterable[str]) -> DAG:
        """The induced graph on `keep`, with edges through dropped nodes preserved as ancestry."""
        kept = set(keep)
        parents: dict[str, list[str]] = {}
        for node in self.topological_order():
            if node in kept:
                parents[node] = sorted(self._nearest_kept_parents(node, kept))
        return DAG(parents)

    def _nearest_kept_parents(self, node: str, kept: set[str]) -> set[str]:
        found: set[str] = set()
        frontier = list(self._parents[node])
        seen: set[str] = set()
        while frontier:
            parent = frontier.pop()
            if parent in seen:
                continue
            seen.add(parent)
            if parent in kept:
                found.add(parent)
            else:
                frontier.extend(self._parents[parent])
        return found
