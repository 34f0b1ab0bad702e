"""No import cycles inside dspy_top: every module can be read, and imported, before the ones that import it.

The import graph is grimp's (the library import-linter runs on), lazy imports inside functions included; imports
under `if TYPE_CHECKING:` are left out, since they are never executed (a screen's type hint naming its app is
not a cycle). A cycle is named module by module, so a failure says which import to move.
"""

from __future__ import annotations

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.find_modules_directly_imported_by(target)))))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def one_cycle(graph: grimp.ImportGraph, group: list[str]) -> str:
    """One cycle through a group's first module, as `a -> b -> a`."""
    start = group[0]
    for target in sorted(graph.find_modules_directly_imported_by(start)):
        if target in group:
            back = graph.find_shortest_chain(importer=target, imported=start)
            if back:
                return " -> ".join((start, *back))
    return " <-> ".join(group)


def test_no_import_cycles():
    graph = grimp.build_graph("dspy_top", include_external_packages=False, exclude_type_checking_imports=True)
    cycles = [one_cycle(graph, group) for group in strongly_connected(graph)]
    assert cycles == [], "import cycles in dspy_top:\n" + "\n".join(cycles)


def test_a_cycle_is_found_and_named():
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    graph.add_import(importer="pkg", imported="pkg.a")
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert one_cycle(graph, ["pkg.a", "pkg.b", "pkg.c"]) == "pkg.a -> pkg.b -> pkg.c -> pkg.a"
