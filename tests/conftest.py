"""Fixtures shared by the tests that run real processes."""

import pytest

from .procs import start_relay


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
