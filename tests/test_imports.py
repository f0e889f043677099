"""No import circles between edge's modules, counting imports made only for
type checking too (issue 15). import-linter checks the layers
(pyproject.toml, [tool.importlinter]); this checks that within and across
them no module imports, directly or through others, a module that imports it."""

from __future__ import annotations

import grimp


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    edges = {
        m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith("edge"))
        for m in graph.modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_edge_is_in_an_import_circle() -> None:
    graph = grimp.build_graph("edge")
    assert len(graph.modules) > 50  # the whole package was read
    assert circles(graph) == []


def test_the_check_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for name in ("edge.a", "edge.b", "edge.c"):
        graph.add_module(name)
    graph.add_import(importer="edge.a", imported="edge.b")
    graph.add_import(importer="edge.b", imported="edge.c")
    graph.add_import(importer="edge.c", imported="edge.a")
    assert circles(graph) == [["edge.a", "edge.b", "edge.c"]]
