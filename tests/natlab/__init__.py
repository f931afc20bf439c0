"""The NAT lab: the real relay and real peers behind real Linux NATs.

Each pair of peers gets network namespaces of its own (root only): an
``inet`` bridge, the relay, and per peer a chain of NAT boxes whose rules
come from :mod:`.profiles`. :mod:`.topology` builds and always removes them,
:mod:`.runner` drives the real command lines inside them, and
:mod:`.expected` holds the one table of what each pair should give.

    python -m tests.natlab up --a symmetric --b port-restricted
    python -m tests.natlab down
    python -m tests.natlab matrix
"""


def require_lab():
    """For a test fixture: skip with the one reason the lab cannot run here,
    or fail where it must run (CI, as root with the tools installed); then
    clear namespaces a crashed earlier run left behind."""
    import os

    import pytest

    from . import topology
    reason = topology.missing_requirements()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail("the NAT lab must run in CI: " + reason)
        pytest.skip(reason)
    topology.remove_stale()
