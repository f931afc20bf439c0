"""The shape the code keeps (issue 11, STYLE.md): protocol logic in sans-I/O
cores that import no socket, thread, selector or clock and call no clock;
no circular imports between the package's modules; modules small enough
to read in one sitting.

Read from the source with ``ast``, so nothing is imported or run. The
allowances below name what is still too large, each to be removed when its
module is split: the test fails when an allowance is no longer needed too,
so the list only shrinks.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "peerpunch")

SHELLS = {"relay", "peer", "cli", "_pyz_main", "__main__", "shell", "peershell",
          "termshell", "guiapp", "guitest", "batchio", "diskwriter"}
"""The I/O shells: only these may touch sockets, threads, selectors and the clock."""

FORBIDDEN = {"socket", "threading", "selectors", "time", "datetime", "asyncio", "_thread",
             "queue", "signal"}
MAX_LINES = 400        # "a few hundred"
TOO_LARGE = {          # module -> why it is allowed for now
}


def _modules():
    """(dotted name relative to the package, path) of every module in it."""
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                yield rel[:-len(".__init__")] if rel.endswith(".__init__") else rel, path


MODULES = dict(_modules())


def _tree(name):
    with open(MODULES[name], encoding="utf-8") as f:
        return ast.parse(f.read(), MODULES[name])


def _imports(name):
    """(absolute top-level imports, sibling modules imported) of module *name*."""
    top, siblings = set(), set()
    package = name.rpartition(".")[0] if not MODULES[name].endswith("__init__.py") else name
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            top.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            stem = ".".join(base + ([node.module] if node.module else []))
            if node.module and stem in MODULES:
                siblings.add(stem)
            else:           # from . import a, b
                siblings.update(m for m in (".".join(filter(None, (stem, alias.name)))
                                            for alias in node.names) if m in MODULES)
    return top, siblings


def _is_core(name):
    return name.split(".")[0] not in SHELLS


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _is_core(n)))
def test_shape_core_module_does_no_io_of_its_own(name):
    top, _ = _imports(name)
    assert not top & FORBIDDEN, "%s imports %s" % (name, sorted(top & FORBIDDEN))
    with open(MODULES[name], encoding="utf-8") as f:
        source = f.read()
    assert "time.time(" not in source and "monotonic(" not in source, name


def test_shape_no_circular_imports_between_modules():
    graph = {name: _imports(name)[1] for name in MODULES}
    done, path = set(), []

    def visit(node):
        if node in path:
            cycle = path[path.index(node):] + [node]
            raise AssertionError("circular import: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)
    for name in sorted(graph):
        visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_shape_module_is_small(name):
    with open(MODULES[name], encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    if name in TOO_LARGE:
        assert lines > MAX_LINES, "%s is %d lines now: remove its allowance" % (name, lines)
    else:
        assert lines <= MAX_LINES, "%s is %d lines (at most %d)" % (name, lines, MAX_LINES)


def test_shape_the_checks_see_what_they_look_for():
    """The import reader finds the imports it must find (else the tests
    above pass for nothing)."""
    top, _ = _imports("shell")
    assert {"socket", "selectors"} <= top
    _, siblings = _imports("relay")
    assert "registry" in siblings and "protocol" in siblings
    assert len(MODULES) > 20
