"""protocol and noise are each built from smaller modules (issue 11) but
stay the one module callers import: every public name their parts define
must be reachable as protocol.NAME / noise.NAME, the very same object.

A name added to a part (a new message variant in messages.py, a new feature
in features.py) and forgotten in the re-exports fails here, not in a caller.
"""

import ast
import inspect

import pytest

from peerpunch import endpoints, features, fields, messages, noise, noisecipher
from peerpunch import protocol as P

INTERNAL = {"VALIDATORS"}
"""Public in its part for the part above it, not for protocol's callers."""


def _defined_names(module):
    """Public names *module* itself binds at top level (not those it imports)."""
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")} - INTERNAL


@pytest.mark.parametrize("facade, part", [
    (P, messages), (P, fields), (P, features), (P, endpoints), (noise, noisecipher),
], ids=lambda m: m.__name__.rpartition(".")[2])
def test_protocol_modules_facade_reexports_every_public_name(facade, part):
    names = _defined_names(part)
    assert names, "found no names in %s" % part.__name__
    missing = sorted(n for n in names if getattr(facade, n, None) is not getattr(part, n))
    assert not missing, "%s does not re-export %s" % (facade.__name__, missing)


def test_protocol_modules_every_variant_reachable_by_name():
    assert len(messages.VARIANTS) >= 15
    for name, cls in messages.VARIANTS.items():
        assert getattr(P, name) is cls
