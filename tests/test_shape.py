"""The peer core keeps its shape (issue 11): its modules are sans-I/O -- no
socket, thread, selector or clock -- their module-level imports form no
cycle, and none grows far past a few hundred lines."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "peerpunch"
CORE = ("session", "relayclient", "request", "mapping", "liveness", "registration", "path",
        "candidates", "birthday", "chat", "commands", "securing", "secure", "timers", "events",
        "console", "effects", "link")
FORBIDDEN = {"socket", "threading", "selectors", "time", "queue", "signal"}
MAX_LINES = 450


def _imports(name):
    """The modules *name* imports at module level (peerpunch ones by short name)."""
    tree = ast.parse((PACKAGE / (name + ".py")).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                found.add(node.module.split(".")[0])
            elif node.level:
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.split(".")[0])
    return found


def test_shape_core_modules_touch_no_socket_thread_or_clock():
    for name in CORE:
        assert not _imports(name) & FORBIDDEN, name
        source = (PACKAGE / (name + ".py")).read_text()
        assert "time.time(" not in source and "monotonic(" not in source, name


def test_shape_core_imports_form_no_cycle():
    local = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {name: _imports(name) & local for name in local}

    def visit(name, path):
        assert name not in path, " -> ".join(path + [name])
        for nxt in graph.get(name, ()):
            visit(nxt, path + [name])

    for name in CORE:
        visit(name, [])


def test_shape_core_modules_stay_small():
    sizes = {name: len((PACKAGE / (name + ".py")).read_text().splitlines()) for name in CORE}
    assert max(sizes.values()) <= MAX_LINES, sizes
