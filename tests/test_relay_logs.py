"""The real relay's log stays bounded under a flood (issue 10, finding G),
and --stats-interval logs its counters."""

import re
import socket

import pytest

from peerpunch import protocol as P

from .procs import start_relay
from .test_cli import RELAY, run

FLOOD = 5000
BATCH = 100          # datagrams sent before waiting for the relay to catch up


def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    return sock


def registered(port, name):
    """A seed-form client registered as *name*; it answers our sync probes."""
    sock = udp()
    sock.sendto(P.encode(P.Register(name)), ("127.0.0.1", port))
    assert P.decode(sock.recv(2048)) == P.RegisterAck()
    return sock


def flood_refused_registrations(port, count):
    """*count* Registers for new names from one socket while its IP has as
    many users as the relay allows (a full seed pool takes newcomers in
    place of its least recent registration: issue 10); every BATCH, a Connect from the registered user (answered in
    order) makes sure the relay has read them all (none lost in buffers)."""
    user, flooder = registered(port, "holder"), udp()
    try:
        for start in range(0, count, BATCH):
            for i in range(start, min(count, start + BATCH)):
                flooder.sendto(P.encode(P.Register("flood%d" % i)), ("127.0.0.1", port))
            user.sendto(P.encode(P.Connect("nobody")), ("127.0.0.1", port))
            assert P.decode(user.recv(2048)) == P.TargetNotFound()
    finally:
        flooder.close()
    return user


def test_relay_log_stays_bounded_under_a_flood_of_refused_registrations():
    relay, port = start_relay("--max-users-per-ip", "1", "--no-alt-port")
    try:
        flood_refused_registrations(port, FLOOD).close()
    finally:
        relay.stop()
    lines = relay.lines["stderr"]
    refused = [l for l in lines if re.search(r"refused 'flood\d+' from \S+: too many users at that IP$", l)]
    assert len(refused) == 10
    assert any(re.search(r" \.\.\. and 4,990 more refused registrations \(relay full\) in the last"
                         r" \d+ s$", l) for l in lines), relay.transcript()
    assert re.search(r"relay stopped: .*\bfull_for_ip=5000\b", lines[-1])
    assert re.search(r"relay stopped: .*\blog_lines_suppressed=4990\b", lines[-1])
    assert len(lines) <= 16, relay.transcript()     # start, holder, 10 refused, summary, stop


def test_relay_stats_interval_logs_the_counters():
    relay, port = start_relay("--max-users-per-ip", "1", "--no-alt-port", "--stats-interval", "1")
    try:
        flood_refused_registrations(port, 300).close()
        m = relay.expect(r"^\S+ \S+ stats: users=(\d+) proven=0 seed=1 sessions=0 datagrams_in=(\d+) .*"
                         r"dropped\(full_for_ip=300\)$", stream="stderr")
        assert m.group(1) == "1" and int(m.group(2)) == 1 + 300 + 3
        assert re.search(r" datagrams_out=4 .* internal_errors=0 send_errors=0 "
                         r"log_lines_suppressed=290 limited_sources=0 ", m.group(0)), m.group(0)
    finally:
        relay.stop()


@pytest.mark.parametrize("value", ["-1", "1.5", "x"])
def test_relay_stats_interval_bad_value_is_one_line_and_exit_2(value):
    result = run(RELAY + ["--stats-interval", value])
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--stats-interval" in lines[0], lines
