"""``--nat-check``: the sans-I/O core against the relay's STUN side through
an in-memory NAT, the lines it prints, and the command's exit codes."""

import re
import socket
import subprocess
import sys

import pytest

from peerpunch import natcheck, stun, stunserver

from .procs import PEER, ROOT, env

RELAY = ("203.0.113.1", 3478)
ALT = ("203.0.113.1", 3479)
LOCAL = ("10.0.1.2", 40000)
PUBLIC_IP = "198.51.100.10"


class MemoryNat:
    """One LAN socket behind a NAT, talking to a BindingServer in memory.

    *mapping*: None (no NAT), "eim" (one public port, the local one) or
    "symmetric" (a fresh public port per destination). *port_filter*: admit
    only answers from endpoints the public port has sent to.
    """

    def __init__(self, server, mapping="eim", port_filter=False, answering=(0, 1)):
        self.server = server
        self.mapping = mapping
        self.port_filter = port_filter
        self.answering = answering          # which relay sockets the server answers on
        self.ports = {}
        self.sent_to = {}                   # public endpoint -> destinations
        self.destinations = []              # every destination, in order

    def outbound(self, dst):
        self.destinations.append(dst)
        if self.mapping is None:
            public = LOCAL
        elif self.mapping == "eim":
            public = (PUBLIC_IP, LOCAL[1])
        else:
            public = self.ports.setdefault(dst, (PUBLIC_IP, 50000 + len(self.ports)))
        self.sent_to.setdefault(public, set()).add(dst)
        return public

    def admits(self, src, public):
        return self.mapping is None or not self.port_filter or src in self.sent_to[public]

    def run(self, check):
        """Drive *check* to the end on a fake clock; return the seconds it took."""
        now = 0.0
        pending = check.start(now)
        while not check.done:
            if pending:
                pending = [out for send in pending for out in self._deliver(check, send, now)]
            else:
                now = check.next_deadline()
                pending = check.tick(now)
        return now

    def _deliver(self, check, send, now):
        public = self.outbound(send.addr)
        via = self.server.addresses.index(send.addr)
        if via not in self.answering:
            return []
        out = []
        for reply in self.server.datagram_received(send.data, public, via):
            source = self.server.addresses[reply.via]
            if reply.addr == public and self.admits(source, public):
                out += check.datagram_received(reply.data, source, now)
        return out


def check_through(mapping, port_filter=False, relay=(RELAY, ALT), answering=(0, 1)):
    server = stunserver.BindingServer(relay)
    nat = MemoryNat(server, mapping, port_filter, answering)
    check = natcheck.NatCheck(RELAY)
    seconds = nat.run(check)
    local = [LOCAL]
    return check, nat, seconds, natcheck.report(check.obs, local, LOCAL[1]) if not check.obs.error else []


def line(lines, key):
    (found,) = [l for l in lines if l.startswith(key + ": ")]
    return found[len(key) + 2:]


def test_natcheck_port_restricted_nat():
    check, nat, _, lines = check_through("eim", port_filter=True)
    assert line(lines, "mapping").startswith("endpoint-independent (the same public endpoint")
    assert line(lines, "filtering").startswith("port-dependent")
    assert line(lines, "port preserved") == "yes (local port 40000)"
    assert line(lines, "verdict") == ("direct connections: likely with most peers, symmetric"
                                      " ones after a birthday search of a few seconds"
                                      " (endpoint-independent mapping, port-dependent filtering)")
    assert [l for l in lines if l.startswith("public endpoint: ")] == [
        "public endpoint: 198.51.100.10:40000 (seen from the relay's port 3478)",
        "public endpoint: 198.51.100.10:40000 (seen from the relay's alternate port 3479)"]


def test_natcheck_full_cone_nat():
    _, _, _, lines = check_through("eim")
    assert line(lines, "filtering").startswith("not port-dependent")
    assert line(lines, "verdict") == ("direct connections: likely with most peers, symmetric ones"
                                      " included (endpoint-independent mapping, no port-dependent"
                                      " filtering)")


def test_natcheck_symmetric_nat():
    _, _, _, lines = check_through("symmetric", port_filter=True)
    assert line(lines, "mapping").startswith("address/port-dependent, i.e. symmetric")
    assert line(lines, "port preserved") == "no (local port 40000, public port 50000)"
    assert line(lines, "filtering").startswith("port-dependent")
    assert line(lines, "verdict") == ("direct connections: with peers whose NAT is not symmetric"
                                      " (at once, or after a birthday search of a few seconds if"
                                      " it filters by port); relayed with symmetric ones"
                                      " (symmetric mapping)")


def test_natcheck_no_nat():
    _, _, _, lines = check_through(None)
    assert line(lines, "mapping") == ("endpoint-independent (no NAT: the relay sees our own"
                                      " address and port)")
    assert line(lines, "local candidates") == "10.0.1.2:40000"
    assert line(lines, "verdict").endswith("(no NAT, no port-dependent filtering)")


def test_natcheck_tests_filtering_before_sending_to_the_alternate_port():
    """Sending to the alternate port first would open a port-filtering NAT
    to its answers and hide the filtering."""
    check, nat, seconds, _ = check_through("eim", port_filter=True)
    first_alt = nat.destinations.index(ALT)
    assert set(nat.destinations[:first_alt]) == {RELAY} and set(nat.destinations[first_alt:]) == {ALT}
    assert first_alt == 1 + 1 + natcheck.RETRIES        # binding, then the change-port tries
    assert seconds == pytest.approx(natcheck.RTO * 15)    # the dropped answer costs the full wait


def test_natcheck_relay_without_alternate_port():
    _, nat, _, lines = check_through("eim", relay=(RELAY,))
    assert nat.destinations == [RELAY]
    assert line(lines, "relay") == "203.0.113.1:3478 (no alternate port)"
    assert line(lines, "mapping").startswith("unknown (the relay has no alternate port")
    assert line(lines, "filtering").startswith("unknown (the relay has no alternate port")
    assert line(lines, "verdict") == ("direct connections: unknown (mapping behaviour unknown from"
                                      " one destination)")


def test_natcheck_alternate_port_unreachable():
    """Requests to the alternate port are lost (answers from it still get out)."""
    _, _, _, lines = check_through("eim", answering=(0,))
    assert line(lines, "mapping") == ("unknown (no answer from the relay's alternate port"
                                      " 203.0.113.1:3479)")
    assert line(lines, "filtering").startswith("not port-dependent")
    assert line(lines, "verdict") == ("direct connections: unknown (mapping behaviour unknown from"
                                      " one destination)")


def test_natcheck_silent_relay_is_an_error_after_the_retries():
    check, nat, seconds, lines = check_through("eim", answering=())
    assert check.obs.error == "no STUN answer from the relay at 203.0.113.1:3478 within 3.75 s"
    assert nat.destinations == [RELAY] * (1 + natcheck.RETRIES)
    assert seconds == pytest.approx(3.75)


def test_natcheck_change_refused_leaves_filtering_unknown():
    check = natcheck.NatCheck(RELAY)
    (send,) = check.start(0.0)
    first = stun.parse_message(send.data)
    answer = stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, first.transaction_id,
                          [("XOR-MAPPED-ADDRESS", LOCAL), ("OTHER-ADDRESS", ALT)])
    (send,) = check.datagram_received(bytes(answer), RELAY, 0.1)
    refused = stunserver.answer(send.data, LOCAL, RELAY)           # a one-port server: 420
    (send,) = check.datagram_received(refused, RELAY, 0.2)
    assert send.addr == ALT
    assert check.obs.filtering_unknown == ("the relay would not answer from its other port"
                                           " (error 420 Unrecognized)")


# ------------------------------------------------------------------ the command


def run(*args, timeout=30):
    return subprocess.run([sys.executable, PEER, "--nat-check"] + list(args), cwd=ROOT, env=env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def alt_relay(procs):
    from .procs import start_relay
    proc, port = start_relay()          # its defaults open an alternate port
    procs.append(proc)
    proc.alt = int(proc.expect(r"STUN alternate port 127\.0\.0\.1:(\d+)$", "stderr").group(1))
    proc.addr = "127.0.0.1:%d" % port
    return proc


def test_natcheck_command_against_a_local_relay(alt_relay):
    result = run("--relay", alt_relay.addr, "--bind", "127.0.0.1:0")
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    port = int(re.fullmatch(r"127\.0\.0\.1:(\d+)", line(lines, "local candidates")).group(1))
    assert lines == [
        "relay: %s, alternate 127.0.0.1:%d" % (alt_relay.addr, alt_relay.alt),
        "public endpoint: 127.0.0.1:%d (seen from the relay's port %s)"
        % (port, alt_relay.addr.split(":")[1]),
        "public endpoint: 127.0.0.1:%d (seen from the relay's alternate port %d)" % (port, alt_relay.alt),
        "mapping: endpoint-independent (no NAT: the relay sees our own address and port)",
        "port preserved: yes (local port %d)" % port,
        "filtering: not port-dependent (the relay's answer from its other port got in; with one"
        " relay address, address-dependent and endpoint-independent filtering look alike)",
        "local candidates: 127.0.0.1:%d" % port,
        "verdict: direct connections: likely with most peers, symmetric ones included (no NAT,"
        " no port-dependent filtering)",
    ]
    assert result.stderr == ""


def test_natcheck_command_without_an_answer_exits_1():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        result = run("--relay", "127.0.0.1:%d" % port)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "nat-check: no STUN answer from the relay at 127.0.0.1:%d within 3.75 s" % port]


@pytest.mark.parametrize("args", [
    ["--relay", "127.0.0.1:9", "--wait"],
    ["--relay", "127.0.0.1:9", "--connect", "bob"],
    ["--relay", "no-such-host.invalid:3478"],
    ["--relay", "127.0.0.1:9", "--bind", "192.0.2.1:0"],
    ["--relay", "127.0.0.1"],
])
def test_natcheck_command_bad_arguments_exit_2(args):
    result = run(*args)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "error" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("mapping, expected", [("eim", natcheck.EIM), ("symmetric", natcheck.SYMMETRIC)])
def test_natcheck_quick_asks_binding_and_mapping_only(mapping, expected):
    server = stunserver.BindingServer((RELAY, ALT))
    nat = MemoryNat(server, mapping, port_filter=True)
    check = natcheck.NatCheck(RELAY, quick=True)
    nat.run(check)
    assert nat.destinations == [RELAY, ALT]          # no CHANGE-REQUEST test
    assert check.obs.filtered is None
    assert natcheck.mapping_of(check.obs, ())[0] == expected


def test_natcheck_quick_does_not_follow_an_alternate_address_on_another_host():
    server = stunserver.BindingServer((RELAY, ("203.0.113.99", 3479)))
    nat = MemoryNat(server, "eim")
    check = natcheck.NatCheck(RELAY, quick=True)
    nat.run(check)
    assert nat.destinations == [RELAY] and check.obs.other is None
    assert natcheck.mapping_of(check.obs, ())[0] is None
