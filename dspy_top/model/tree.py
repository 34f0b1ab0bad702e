"""The program as a tree of module paths (`RAG.generate_answer.predict` → RAG ▸ generate_answer ▸ predict).

Parents aggregate their subtree; `flatten` turns the tree into table rows for a given
expansion, sort and filter. Pure functions over frozen values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dspy_top.model.counters import Counters, total

# A module is "active" while it has calls in flight or finished one this recently.
ACTIVE_SECONDS = 3.0


@dataclass(frozen=True)
class ModuleNode:
    """One node of the module tree: `counters` cover the node and everything under it."""

    path: str
    name: str
    depth: int
    class_name: str
    counters: Counters
    own: Counters | None  # calls made at exactly this path (None for a pure parent)
    tokens_per_sec: float
    active: bool
    children: tuple[ModuleNode, ...]


@dataclass(frozen=True)
class LeafInput:
    """What the fleet knows about one module path, summed across the processes in view."""

    path: str
    class_name: str
    chain: tuple[str, ...]
    counters: Counters
    tokens_per_sec: float
    live: bool = True  # some process still running made calls at this path


def split_path(path: str) -> list[str]:
    if path.startswith("(") or "." not in path:
        return [path]
    return [part for part in path.split(".") if part] or [path]


def build_tree(leaves: Iterable[LeafInput], now: float) -> tuple[ModuleNode, ...]:
    """Nodes for every path and every prefix of one, parents aggregating their children."""
    own: dict[str, LeafInput] = {}
    classes: dict[str, str] = {}
    children: dict[str, list[str]] = {"": []}
    for leaf in leaves:
        parts = split_path(leaf.path)
        own[leaf.path] = leaf
        prefix = ""
        for depth, part in enumerate(parts):
            path = f"{prefix}.{part}" if prefix else part
            if path not in children:
                children[path] = []
                children[prefix].append(path)
            # The chain names the class at each level when it lines up with the path.
            if len(leaf.chain) == len(parts) and path not in classes:
                classes[path] = leaf.chain[depth]
            prefix = path
        if leaf.class_name:
            classes[leaf.path] = leaf.class_name

    def make(path: str, depth: int) -> ModuleNode:
        kids = tuple(make(child, depth + 1) for child in children[path])
        leaf = own.get(path)
        parts = [leaf.counters] if leaf is not None else []
        parts.extend(kid.counters for kid in kids)
        counters = total(parts)
        rate = (leaf.tokens_per_sec if leaf is not None else 0.0) + sum(k.tokens_per_sec for k in kids)
        # Only a process still running keeps a module active: once it ended, its modules are idle at once.
        recent = leaf is not None and leaf.live and counters.last_at > 0 and now - counters.last_at < ACTIVE_SECONDS
        active = counters.in_flight > 0 or recent or any(kid.active for kid in kids)
        return ModuleNode(
            path=path,
            name=split_path(path)[-1] if not path.startswith("(") else path,
            depth=depth,
            class_name=classes.get(path, ""),
            counters=counters,
            own=leaf.counters if leaf is not None else None,
            tokens_per_sec=rate,
            active=active,
            children=kids,
        )

    return tuple(make(root, 0) for root in children[""])


# --- sorting and flattening ---------------------------------------------------------

SORT_KEYS: dict[str, Callable[[ModuleNode], object]] = {
    "module": lambda n: n.path.lower(),
    "state": lambda n: (n.active, n.counters.in_flight),
    "calls": lambda n: n.counters.calls,
    "in_flight": lambda n: n.counters.in_flight,
    "prompt_tokens": lambda n: n.counters.prompt_tokens,
    "completion_tokens": lambda n: n.counters.completion_tokens,
    "tokens_per_sec": lambda n: n.tokens_per_sec,
    "cost": lambda n: n.counters.cost_usd,
    "share": lambda n: n.counters.cost_usd,
    "p50": lambda n: n.counters.p50 or 0.0,
    "p95": lambda n: n.counters.p95 or 0.0,
    "errors": lambda n: n.counters.errors,
    "cache_hits": lambda n: n.counters.cache_hits,
    "saved": lambda n: n.counters.cost_saved_usd,
}


@dataclass(frozen=True)
class ModuleRow:
    """One visible row of the module table."""

    node: ModuleNode
    depth: int
    expandable: bool
    expanded: bool
    guide: str  # tree guide drawn before the name: the ancestors' lines ("│ " or "  ") and its own ("├─", "└▾", "▾ ")


def _ordered(nodes: Iterable[ModuleNode], sort: str, descending: bool) -> list[ModuleNode]:
    key = SORT_KEYS.get(sort, SORT_KEYS["cost"])
    by_name = sorted(nodes, key=lambda n: n.path)  # ties keep a stable, readable order
    return sorted(by_name, key=key, reverse=descending)


def flatten(
    roots: Iterable[ModuleNode],
    *,
    collapsed: set[str] | frozenset[str] = frozenset(),
    sort: str = "cost",
    descending: bool = True,
    tree: bool = True,
    keep: Callable[[str], bool] | None = None,
) -> list[ModuleRow]:
    """Rows to show, depth first. `keep(path)` filters: a parent stays when a descendant is kept.

    In flat mode (`tree=False`) only paths that made calls appear, by full path, sorted globally.
    """
    if not tree:
        leaves: list[ModuleNode] = []

        def collect(node: ModuleNode) -> None:
            if node.own is not None:
                leaves.append(
                    ModuleNode(
                        node.path, node.path, 0, node.class_name, node.own, node.own, _own_rate(node), node.active, ()
                    )
                )
            for child in node.children:
                collect(child)

        for root in roots:
            collect(root)
        return [
            ModuleRow(n, 0, False, False, "")
            for n in _ordered(leaves, sort, descending)
            if keep is None or keep(n.path)
        ]

    def visible(node: ModuleNode) -> bool:
        return keep is None or keep(node.path) or any(visible(c) for c in node.children)

    rows: list[ModuleRow] = []

    def walk(node: ModuleNode, depth: int, last: bool, lines: str) -> None:
        """`lines`: what the ancestors below the root draw in front of this row (`│ ` under a
        branch that goes on, blanks under a last child)."""
        expandable = bool(node.children)
        # A filter opens the branches that hold matches.
        expanded = expandable and (node.path not in collapsed or keep is not None)
        if depth == 0:
            guide = ("▾ " if expanded else "▸ ") if expandable else "  "
        else:
            guide = lines + ("└" if last else "├") + ("▾" if expanded else "▸" if expandable else "─")
        rows.append(ModuleRow(node, depth, expandable, expanded, guide))
        if expanded:
            kids = [k for k in _ordered(node.children, sort, descending) if visible(k)]
            below = lines + ("  " if last else "│ ") if depth else ""
            for i, kid in enumerate(kids):
                walk(kid, depth + 1, i == len(kids) - 1, below)

    top = [r for r in _ordered(roots, sort, descending) if visible(r)]
    for root in top:
        walk(root, 0, True, "")
    return rows


def _own_rate(node: ModuleNode) -> float:
    return node.tokens_per_sec - sum(c.tokens_per_sec for c in node.children)
