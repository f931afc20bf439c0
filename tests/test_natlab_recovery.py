"""Recovery in the NAT lab: a NAT that remaps a running chat, a relay that
restarts under one (needs root, ip, iptables, nft and conntrack).

* NAT rebinding: alice and bob chat directly with ``--keepalive 2``; then
  alice's NAT forgets every mapping (``conntrack -F`` in its namespace), so
  her next datagram leaves from a new public port (behind ``symmetric``: a
  fresh random one). Nobody types for longer than the three keep-alive
  intervals after which a peer is lost, so the keep-alives alone must find
  the new path; then a line crosses each way, in the same session.
* Relay restart: alice and bob chat directly and carol waits behind a NAT of
  her own; the relay is stopped (SIGTERM) and a new one started on the same
  address and port. The chat goes on untouched, and dave, a new peer, asks
  for carol at once: she is not known to the new relay until she
  re-registers by herself (every keep-alive interval, here 2 s), so dave
  waits and is connected to her when she does.
* Relay restart under a relayed chat (two symmetric NATs): the new relay
  knows nothing, the peers re-register naming their chat and its secret,
  and the pairing -- forwarding included -- comes back.

Each scenario runs in a lab of its own, all started at once on a small pool
(NATLAB_JOBS, default 3) when the first of these tests runs; the tests then
assert on what the peers printed.
"""

import concurrent.futures
import dataclasses
import functools
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from .natlab import profiles, runner, topology
from .natlab import require_lab
from .procs import start_peer, start_relay

pytestmark = pytest.mark.natlab

KEEPALIVE = 2.0
QUIET = 3.5 * KEEPALIVE        # silence after the flush: longer than "lost" (3 intervals)
LINE_WAIT = 4 * KEEPALIVE      # a line typed after the flush must arrive within this
REREGISTER_WAIT = 25.0         # restart -> every peer registered again (they do every 2 s here)
RESTORE_WAIT = 4 * KEEPALIVE   # restart -> a relayed chat's peers, gone quiet, re-register

CAROL_PUBLIC_IP = "198.51.100.30"
CAROL_LAN_IP = "10.0.3.2"

# Lines a peer prints when its path changes mid-chat (peerpunch/session.py).
RECOVERY = re.compile(r"^(?P<who>\S+) moved to (?P<moved>\S+)$"
                      r"|^the direct path to \S+ went quiet: going through the relay$"
                      r"|^now direct with \S+ at (?P<direct>\S+)$"
                      r"|^the relay says \S+ is now at (?P<says>\S+)$")
CHAT_LINE = re.compile(r"^\[\w+\]> ")
RELAY_STATUS = re.compile(r"^relay \S+ (is not answering|is back|says it is stopping)")  # allowed


class ThreeSiteLab(topology.Lab):
    """The usual lab plus carol: public CAROL_PUBLIC_IP behind *profile_c*,
    LAN 10.0.3.0/24, built and torn down with the rest."""

    def __init__(self, profile_a, profile_b, profile_c, **kwargs):
        super().__init__(profile_a, profile_b, **kwargs)
        if profile_c not in profiles.SIDE_PROFILES or profile_c == "open":
            raise ValueError("carol needs a NAT profile of one side, not %r" % profile_c)
        self.profiles["carol"] = profile_c

    def build(self):
        super().build()
        rule_sets = profiles.PROFILES[self.profiles["carol"]](self._mapping_lifetime())
        nats = self._nat_chain("carol", 3, rule_sets, public_ip=CAROL_PUBLIC_IP)
        host = self._lan_host(nats[-1], "carol", CAROL_LAN_IP, "10.0.3.1")
        self.sites["carol"] = topology.Site("carol", host, CAROL_LAN_IP, CAROL_PUBLIC_IP, nats)


class RecoveryChat(runner.Chat):
    """A Chat that also owns further peers and relays, and can wait for lines
    printed after a given point."""

    def __init__(self, lab, **kwargs):
        super().__init__(lab, **kwargs)
        self.extra = {}               # name -> Proc: more peers
        self.old_relays = []

    def stop(self):
        super().stop()
        for proc in list(self.extra.values()) + self.old_relays:
            proc.stop()

    def extra_peer(self, name, site, *args):
        """Start peer *name* in *site*'s namespace (another user on that host)."""
        proc = start_peer(self.relay_addr, "--name", name, *args, *self.options,
                          prefix=self.lab.sites[site].host.command())
        self.extra[name] = proc
        return proc

    def transcript(self):
        parts = [super().transcript()]
        for i, proc in enumerate(self.old_relays):
            parts.append("--- relay before restart %d\n%s" % (i + 1, proc.transcript()))
        for name, proc in self.extra.items():
            parts.append("--- %s: %s\n%s" % (name, " ".join(proc.argv[4:]), proc.transcript()))
        return "\n".join(parts)

    def expect_after(self, proc, start, pattern, wait, step, stream="stdout"):
        """A line of *proc* matching *pattern*, among those from index *start* on."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + wait
        while True:
            lines = proc.lines[stream]
            for i in range(start, len(lines)):
                m = regex.search(lines[i])
                if m:
                    return i, m
            start = len(lines)
            if time.monotonic() >= deadline or proc.popen.poll() is not None:
                if proc.popen.poll() is not None:
                    proc.finish_output()             # every line it wrote, read
                    if any(regex.search(l) for l in proc.lines[stream][start:]):
                        continue
                raise runner.StepFailed("%s: no line matching %r within %g s (exit status %s)\n%s"
                                        % (step, pattern, wait, proc.popen.poll(), self.transcript()))
            time.sleep(0.05)

    def line_crosses(self, src, dst, name, text, wait):
        """Type *text* on *src*; seconds until *dst* printed it, or None."""
        start, sent = len(dst.lines["stdout"]), time.monotonic()
        self._send(src, text)
        try:
            self.expect_after(dst, start, r"^\[%s\]> %s$" % (name, re.escape(text)), wait, "")
        except runner.StepFailed:
            return None
        return time.monotonic() - sent


def connected_lines(proc):
    return [l for l in proc.lines["stdout"] if l.startswith("connected to ")]


def public_ports(nat, lan_ip, dst_ip):
    """Public ports *nat*'s conntrack maps *lan_ip*'s UDP flows to *dst_ip* to."""
    listing = nat.run("conntrack", "-L", "-p", "udp")
    ports = set()
    for line in listing.splitlines():
        fields = re.findall(r"(\w+)=(\S+)", line)
        src = [v for k, v in fields if k == "src"]
        dst = [v for k, v in fields if k == "dst"]
        dport = [v for k, v in fields if k == "dport"]
        if len(src) == 2 and src[0] == lan_ip and dst[0] == dst_ip and len(dport) == 2:
            ports.add(int(dport[1]))         # the reply goes to the public port
    return ports


@dataclasses.dataclass
class ScenarioOutcome:
    """What every scenario records (_run_scenario fills these in)."""
    problem: str = None                   # the first step that failed, if any
    transcript: str = ""
    wall_seconds: float = 0.0


# -- NAT rebinding


@dataclasses.dataclass
class RebindOutcome(ScenarioOutcome):
    pair: tuple = None
    path: str = "error"                   # as both peers printed it on connecting
    via: dict = None
    ports_before: set = None              # alice's public ports toward bob, from her NAT
    ports_after: set = None
    bob_saw_before: str = None            # alice's endpoint as bob connected to it
    recovery: dict = dataclasses.field(default_factory=dict)   # name -> recovery lines in the quiet
    recovery_seconds: float = None        # flush -> first recovery line
    delivered: dict = dataclasses.field(default_factory=dict)  # sender -> seconds or None
    after_flush: dict = dataclasses.field(default_factory=dict)  # name -> stdout after the flush
    lost_lines: list = None
    connected: dict = None                # name -> number of "connected to" lines
    ended_on: dict = None                 # name -> path the peer's last notice put it on
    goodbye: bool = False


def run_rebinding(profile_a, profile_b):
    """Chat, flush alice's NAT, stay silent for QUIET, then a line each way."""
    return _run_scenario(lambda: topology.Lab(profile_a, profile_b), _rebinding_steps,
                         RebindOutcome(pair=(profile_a, profile_b)))


def _rebinding_steps(lab, chat, out):
    chat.start()
    out.path = chat.connect()[0]
    out.via = chat.via
    if out.path != "direct":
        raise runner.StepFailed("the chat did not connect directly: %s" % out.path)
    chat.exchange("before the flush")
    out.bob_saw_before = re.search(runner.CONNECTED.format(peer="alice"),
                                   connected_lines(chat.bob)[0]).group("endpoint")
    nat, alice, bob = lab.sites["alice"].nats[0], lab.sites["alice"], lab.sites["bob"]
    out.ports_before = public_ports(nat, alice.lan_ip, bob.public_ip)
    marks = {"alice": len(chat.alice.lines["stdout"]), "bob": len(chat.bob.lines["stdout"])}
    nat.run("conntrack", "-F")
    flushed = time.monotonic()
    while time.monotonic() - flushed < QUIET:       # nobody types
        for name, proc in (("alice", chat.alice), ("bob", chat.bob)):
            seen = [l for l in proc.lines["stdout"][marks[name]:] if RECOVERY.search(l)]
            if seen and out.recovery_seconds is None:
                out.recovery_seconds = time.monotonic() - flushed
            out.recovery[name] = seen
        time.sleep(0.05)
    out.delivered["alice"] = chat.line_crosses(chat.alice, chat.bob, "alice", "after the flush from alice",
                                               LINE_WAIT)
    out.delivered["bob"] = chat.line_crosses(chat.bob, chat.alice, "bob", "after the flush from bob",
                                             LINE_WAIT)
    out.ports_after = public_ports(nat, alice.lan_ip, bob.public_ip)
    out.lost_lines = chat.lost_lines()
    out.connected = {"alice": len(connected_lines(chat.alice)), "bob": len(connected_lines(chat.bob))}
    out.after_flush = {"alice": chat.alice.lines["stdout"][marks["alice"]:],
                       "bob": chat.bob.lines["stdout"][marks["bob"]:]}
    out.ended_on = {name: _path_after(lines) for name, lines in out.after_flush.items()}
    if all(out.delivered.values()):
        chat.goodbye()
        out.goodbye = True


def _path_after(lines):
    """direct (unchanged), direct (moved) or relayed: where the notices left a peer."""
    path = "direct (unchanged)"
    for line in lines:
        if "went quiet: going through the relay" in line:
            path = "relayed"
        elif re.search(r" moved to |^now direct with |^the relay says ", line):
            path = "direct (moved)"
    return path


# -- relay restart


@dataclasses.dataclass
class RestartOutcome(ScenarioOutcome):
    path: str = "error"
    relay_exit: object = None             # the first relay's exit status after SIGTERM
    relay_stopped_line: str = None
    delivered: dict = dataclasses.field(default_factory=dict)   # phase -> exchange worked
    down_seconds: float = None            # SIGTERM -> new relay listening
    reconnect_seconds: float = None       # new relay listening -> dave connected to carol
    not_found: int = 0                    # dave's /connect carol answered "not found" first
    reregistered: dict = dataclasses.field(default_factory=dict)  # name -> s after restart, or None
    dave_carol: str = None                # the path dave and carol printed
    dave_carol_chat: bool = False
    disturbances: list = None             # alice's and bob's non-chat lines since the first exchange
    lost_lines: list = None
    connected: dict = None
    goodbye: bool = False


def run_relay_restart():
    return _run_scenario(lambda: ThreeSiteLab("port-restricted", "port-restricted", "port-restricted"),
                         _restart_steps, RestartOutcome())


def _run_scenario(make_lab, steps, out):
    """Build the lab, run *steps(lab, chat, out)* in it and record into *out*
    the first failed step, the transcript and the wall time."""
    started = time.monotonic()
    try:
        with make_lab() as lab, RecoveryChat(lab, keepalive=KEEPALIVE) as chat:
            try:
                steps(lab, chat, out)
            except runner.StepFailed as exc:
                out.problem = str(exc).split("\n", 1)[0]
            out.transcript = chat.transcript()
    except (topology.LabError, OSError) as exc:
        out.problem = "lab: %s" % exc
    out.wall_seconds = time.monotonic() - started
    return out


def _exchange(chat, out, phase):
    try:
        chat.exchange(phase)
        out.delivered[phase] = True
    except runner.StepFailed:
        out.delivered[phase] = False


def _restart_steps(lab, chat, out):
    chat.start()
    carol = chat.extra_peer("carol", "carol", "--wait")
    chat._expect(carol, r"^registered as carol ", runner.REGISTER_WAIT, "carol registers")
    out.path = chat.connect()[0]
    if out.path != "direct":
        raise runner.StepFailed("alice and bob did not connect directly: %s" % out.path)
    _exchange(chat, out, "before the restart")
    marks = {"alice": len(chat.alice.lines["stdout"]), "bob": len(chat.bob.lines["stdout"])}

    port = int(chat.relay_addr.rsplit(":", 1)[1])
    old = chat.relay
    chat.old_relays.append(old)
    down = time.monotonic()
    old.signal(signal.SIGTERM)
    try:
        out.relay_exit = old.wait(5)
    except subprocess.TimeoutExpired:
        out.relay_exit = "still running 5 s after SIGTERM"
    old.finish_output()                     # its last line read, if it wrote one
    out.relay_stopped_line = next((l for l in old.lines["stderr"] if "relay stopped" in l), None)
    _exchange(chat, out, "while the relay is down")
    chat.relay, _ = start_relay("-v", host=topology.RELAY_IP, prefix=lab.relay.command(), port=port)
    restarted = time.monotonic()
    out.down_seconds = restarted - down
    _exchange(chat, out, "after the restart")

    dave = chat.extra_peer("dave", "alice", "--wait")
    chat._expect(dave, r"^registered as dave ", runner.REGISTER_WAIT, "dave registers")
    pattern = runner.CONNECTED.format(peer="carol")
    start = len(dave.lines["stdout"])
    chat._send(dave, "/connect carol")            # not found at first: dave waits for her
    i, m = chat.expect_after(dave, start, "%s|%s" % (r"^could not reach carol at ", pattern),
                             REREGISTER_WAIT + runner.PUNCH_TIMEOUT, "dave reaches carol")
    if not m.group("path"):
        raise runner.StepFailed("dave could not reach carol: %s" % m.group(0))
    out.reconnect_seconds = time.monotonic() - restarted
    out.not_found = sum(bool(re.search(runner.NOT_FOUND, l)) for l in dave.lines["stdout"][start:])
    dave_path = m.group("path")
    _, m = chat.expect_after(carol, 0, runner.CONNECTED.format(peer="dave"), runner.LINE_WAIT,
                             "carol connects to dave")
    out.dave_carol = dave_path if m.group("path") == dave_path else \
        "dave: %s, carol: %s" % (dave_path, m.group("path"))
    out.dave_carol_chat = bool(chat.line_crosses(dave, carol, "dave", "hi carol", runner.LINE_WAIT)) and \
        bool(chat.line_crosses(carol, dave, "carol", "hi dave", runner.LINE_WAIT))

    for name in ("alice", "bob", "carol"):                   # on the new relay, by themselves
        try:
            chat.expect_after(chat.relay, 0, r"registered '%s' at " % name,
                              max(0.0, restarted + REREGISTER_WAIT - time.monotonic()), "", "stderr")
            line = next(l for l in chat.relay.lines["stderr"] if "registered '%s' at " % name in l)
            out.reregistered[name] = _log_time(line) - _log_time(chat.relay.lines["stderr"][0])
        except runner.StepFailed:
            out.reregistered[name] = None
    _exchange(chat, out, "at the end")
    out.lost_lines = chat.lost_lines()
    out.connected = {"alice": len(connected_lines(chat.alice)), "bob": len(connected_lines(chat.bob))}
    out.disturbances = ["%s: %s" % (name, l) for name, proc in (("alice", chat.alice), ("bob", chat.bob))
                        for l in proc.lines["stdout"][marks[name]:]
                        if not CHAT_LINE.search(l) and not RELAY_STATUS.search(l)]
    for name in ("dave", "carol"):
        chat._send(chat.extra[name], "/quit")
    chat.goodbye()
    for name in ("dave", "carol"):
        status = chat.extra[name].wait(runner.LINE_WAIT)
        if status != 0:
            raise runner.StepFailed("%s exited with status %s" % (name, status))
    out.goodbye = True


@dataclasses.dataclass
class RelayedRestartOutcome(ScenarioOutcome):
    path: str = "error"
    delivered: dict = dataclasses.field(default_factory=dict)   # phase -> exchange worked
    restored_seconds: float = None        # new relay listening -> it logged the restored session
    lost_lines: list = None
    connected: dict = None


def run_relayed_restart():
    return _run_scenario(lambda: topology.Lab("symmetric", "symmetric"), _relayed_restart_steps,
                         RelayedRestartOutcome())


def _relayed_restart_steps(lab, chat, out):
    chat.start()
    out.path = chat.connect()[0]
    if out.path != "relayed":
        raise runner.StepFailed("alice and bob are not relayed: %s" % out.path)
    _exchange(chat, out, "before the restart")
    port = int(chat.relay_addr.rsplit(":", 1)[1])
    chat.old_relays.append(chat.relay)
    chat.relay.signal(signal.SIGTERM)
    try:
        chat.relay.wait(5)
    except subprocess.TimeoutExpired:
        raise runner.StepFailed("the relay still runs 5 s after SIGTERM") from None
    chat.relay, _ = start_relay("-v", host=topology.RELAY_IP, prefix=lab.relay.command(), port=port)
    restarted = time.monotonic()
    chat.expect_after(chat.relay, 0, r"restored the session of '(alice|bob)' and '(alice|bob)'",
                      RESTORE_WAIT, "the new relay restores the relayed chat", "stderr")
    out.restored_seconds = time.monotonic() - restarted
    _exchange(chat, out, "after the restart")
    time.sleep(4 * KEEPALIVE)               # longer than "lost": the relayed path really works
    _exchange(chat, out, "a while later")
    out.lost_lines = chat.lost_lines()
    out.connected = {"alice": len(connected_lines(chat.alice)), "bob": len(connected_lines(chat.bob))}
    chat.goodbye()


def _log_time(line):
    """Seconds of the day of a relay log line (``2026-01-01 12:00:00,123 ...``)."""
    h, m, s = line.split()[1].replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


# -- running the scenarios


SCENARIOS = {   # test name -> (scenario, expected seconds): the longest start first
    "test_natlab_rebinding_symmetric_recovers_without_the_user":
        (functools.partial(run_rebinding, "symmetric", "full-cone"), 14),
    "test_natlab_rebinding_port_restricted_keeps_delivering":
        (functools.partial(run_rebinding, "port-restricted", "port-restricted"), 14),
    "test_natlab_relay_restart_leaves_the_chat_and_names_reachable":
        (run_relay_restart, 30),
    "test_natlab_relay_restart_restores_a_relayed_chat":
        (run_relayed_restart, 20),
}


@pytest.fixture(scope="module")
def recovery(request):
    require_lab()
    ours = [item.originalname for item in request.session.items
            if getattr(item, "module", None) is sys.modules[__name__] and item.originalname in SCENARIOS]
    before = set(topology.list_namespaces())
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(os.environ.get("NATLAB_JOBS", "3")))
    futures = {name: pool.submit(SCENARIOS[name][0])
               for name in sorted(ours, key=lambda n: -SCENARIOS[n][1])}
    yield futures
    runner.stop_pool(pool, futures.values())
    mine = "%s%d-" % (topology.FAMILY, os.getpid())
    left = [n for n in set(topology.list_namespaces()) - before if n.startswith(mine)]
    assert not left, "namespaces left behind: %s" % left


def _outcome(recovery, request):
    return recovery[request.node.originalname].result()


def test_natlab_rebinding_symmetric_recovers_without_the_user(recovery, request):
    """alice behind a symmetric NAT, bob behind a full cone: after alice's
    NAT forgets its mappings, her keep-alives leave from a new random port,
    bob's NAT admits them and he moves the chat there by himself (or the
    chat goes through the relay), before anyone types; then a line crosses
    each way in the same session."""
    o = _outcome(recovery, request)
    assert o.path == "direct" and o.problem is None, "%s\n%s" % (o.problem, o.transcript)
    assert o.recovery.get("alice") or o.recovery.get("bob"), \
        "no peer noticed the new path in %g s of silence\n%s" % (QUIET, o.transcript)
    assert all(o.delivered.values()) and len(o.delivered) == 2, "%s\n%s" % (o.delivered, o.transcript)
    assert o.lost_lines == [] and o.connected == {"alice": 1, "bob": 1}, o.transcript
    # The port bob chatted with before must be gone. (ports_before also holds
    # the dead mappings of alice's birthday-search sockets, which conntrack
    # keeps for 30 s: one of 257 old ports may well come back by chance.)
    chat_port = int(o.bob_saw_before.rsplit(":", 1)[1])
    assert chat_port in o.ports_before and o.ports_after and chat_port not in o.ports_after, \
        "the flush did not give alice a new public port: %d -> %s" % (chat_port, o.ports_after)
    if o.ended_on["bob"] == "direct (moved)":    # he followed her to the port her NAT gives her now
        final = [e for m in map(RECOVERY.search, o.after_flush["bob"]) if m
                 for e in (m.group("moved") or m.group("direct") or m.group("says"),) if e]
        assert final and final[-1] in ["%s:%d" % (topology.PUBLIC_IP["alice"], p) for p in o.ports_after], \
            "bob went direct to %s, alice's NAT maps her to %s" % (final, o.ports_after)
    assert o.goodbye, o.problem


def test_natlab_rebinding_port_restricted_keeps_delivering(recovery, request):
    """Both behind home routers: the flush may keep alice's public port
    (MASQUERADE keeps it while free); either way, after the silence both
    lines arrive in the same session."""
    o = _outcome(recovery, request)
    assert o.path == "direct" and o.problem is None, "%s\n%s" % (o.problem, o.transcript)
    assert all(o.delivered.values()) and len(o.delivered) == 2, "%s\n%s" % (o.delivered, o.transcript)
    assert o.lost_lines == [] and o.connected == {"alice": 1, "bob": 1}, o.transcript
    assert o.ports_before and o.ports_after, "no mapping toward bob on alice's NAT"
    assert o.goodbye, o.problem


def test_natlab_relay_restart_leaves_the_chat_and_names_reachable(recovery, request):
    """The relay stops (SIGTERM) and a new one starts on the same address and
    port: alice's and bob's direct chat goes on without a notice (but
    "relay ... says it is stopping" and "relay ... is back"),
    every registered peer is on the new relay within 25 s by itself, and
    dave reaches carol by name, waiting for her if the new relay does not
    know her yet."""
    o = _outcome(recovery, request)
    assert o.path == "direct" and o.problem is None, "%s\n%s" % (o.problem, o.transcript)
    assert o.relay_exit == 0 and o.relay_stopped_line, o.transcript
    assert o.delivered == dict.fromkeys(("before the restart", "while the relay is down",
                                         "after the restart", "at the end"), True), o.transcript
    assert o.disturbances == [] and o.lost_lines == [] and o.connected == {"alice": 1, "bob": 1}, \
        "%s\n%s" % (o.disturbances, o.transcript)
    assert o.reconnect_seconds is not None and o.reconnect_seconds <= REREGISTER_WAIT, o.transcript
    assert o.dave_carol == "direct" and o.dave_carol_chat, o.transcript
    assert all(s is not None for s in o.reregistered.values()), \
        "not registered on the new relay within %g s: %s" % (REREGISTER_WAIT, o.reregistered)
    assert o.goodbye, o.problem


def test_natlab_relay_restart_restores_a_relayed_chat(recovery, request):
    """Two symmetric NATs, so the chat is relayed; the relay restarts and
    forgets the pairing. The peers notice the silence within a few
    keep-alives, re-register naming their chat and its secret, the new relay
    restores the pairing, and lines cross again in the same session."""
    o = _outcome(recovery, request)
    assert o.path == "relayed" and o.problem is None, "%s\n%s" % (o.problem, o.transcript)
    assert o.delivered == {"before the restart": True, "after the restart": True,
                           "a while later": True}, o.transcript
    assert o.restored_seconds is not None
    assert o.lost_lines == [] and o.connected == {"alice": 1, "bob": 1}, o.transcript
