"""Fixtures shared by the tests that run real processes."""

import os

import pytest

from peerpunch import console, events
from peerpunch import filestore

from . import rawudp
from .procs import start_relay

# The tests read a Words event as the terminal would show it: ``event.text``
# (``.reason`` for a failure). The cores never need the words (they live in
# console.py, which the cores do not import), so the view is the tests' own.
events.Words.text = events.Words.reason = property(console.format_event)


@pytest.fixture(autouse=True)
def no_staging_held():
    """Each test starts with no staging held and no bytes reserved in this
    process (both are process-wide: a test that leaves a transfer open
    would otherwise count against the next)."""
    yield
    filestore._LEDGER.clear()
    filestore._IN_USE.clear()


@pytest.fixture
def procs():
    """Processes a test started; all stopped afterwards, whatever happened."""
    started = []
    yield started
    for proc in started:
        proc.stop()


@pytest.fixture
def relay(procs):
    """A real relay on 127.0.0.1 and an ephemeral port, with -v."""
    proc, port = start_relay("-v")
    procs.append(proc)
    proc.addr = "127.0.0.1:%d" % port
    proc.port = port
    return proc


@pytest.fixture
def raw():
    """For tests that forge source addresses or capture traffic (raw
    sockets, root only): skip where they are unavailable, fail in CI, which
    runs as root."""
    reason = rawudp.available()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail("attack tests must run in CI: " + reason)
        pytest.skip(reason)
