"""The real relay and peers inside a lab, watched the way a user would.

Theory of operation
-------------------
:class:`Chat` starts ``python -m peerpunch.relay`` in the relay's namespace
and ``bin/peer.py`` in each peer's (``ip netns exec NS ...``, the real
command lines, through :mod:`tests.procs`): bob waits, alice connects. Its
steps wait for printed lines with timeouts and raise :class:`StepFailed`
(with both peers' stdout and ``-v`` stderr) when a line does not come.

The scenarios at the bottom build a lab, run a chat through it and return
what was seen; they never assert, so the CLI can print a table and the
tests decide what is right.
"""

import concurrent.futures
import dataclasses
import re
import subprocess
import sys
import time

from ..procs import Proc, start_peer, start_relay
from . import topology

PUNCH_TIMEOUT = 5.0      # --punch-timeout for the peers: lab paths punch in well under 1 s
REGISTER_WAIT = 15.0     # the peer gives up registering after 10 s
LINE_WAIT = 5.0          # a chat line or goodbye crossing a working path

CONNECTED = r"^connected to {peer} at (?P<endpoint>\S+) \((?P<path>[^)]+)\) (?P<security>encrypted, key [0-9a-f-]+|unencrypted), in (?P<seconds>\d+\.\d+) s$"
UNREACHABLE = r"^could not reach {peer} at (?P<endpoint>\S+): "
NOW_DIRECT = r"^now direct with {peer} at (?P<endpoint>\S+)$"
NOT_FOUND = r"^Target user not found\.$"
LOST = r"^connection to \S+ lost$"
IGNORED = re.compile(r"^ignored \d+ bytes from (\S+) .*not the relay or our peer")


class StepFailed(AssertionError):
    """A line a user would have seen did not appear."""


class Chat:
    """Relay, bob waiting and alice connecting to him, inside *lab*."""

    def __init__(self, lab, *, punch_timeout=PUNCH_TIMEOUT, keepalive=None):
        self.lab = lab
        self.options = ["-v", "--punch-timeout", "%g" % punch_timeout]
        if keepalive is not None:
            self.options += ["--keepalive", "%g" % keepalive]
        self.punch_timeout = punch_timeout
        self.relay = self.alice = self.bob = None
        self.relay_addr = None
        self.via = None               # peer name -> kind of endpoint it connected to
        self.paths = self.endpoints = None   # peer name -> its connect line's path, endpoint

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def peers(self):
        return [p for p in (self.alice, self.bob) if p is not None]

    def stop(self):
        """SIGTERM (a polite goodbye) to whatever still runs."""
        for proc in self.peers() + [p for p in (self.relay,) if p is not None]:
            proc.stop()

    # -- steps

    def start(self):
        """Start the relay and bob; return once bob is registered."""
        # The relay's own defaults (port 8080, STUN alternate port 8081): what
        # users run must be what gives symmetric NATs their birthday search.
        self.relay, port = start_relay(host=topology.RELAY_IP, port=None,
                                       prefix=self.lab.relay.command())
        self.relay.expect(r"STUN alternate port %s:%d$" % (re.escape(topology.RELAY_IP), port + 1),
                          "stderr")
        self.relay_addr = "%s:%d" % (topology.RELAY_IP, port)
        self.bob = self._peer("bob", "--wait")
        self._expect(self.bob, r"^registered as bob ", REGISTER_WAIT, "bob registers")

    def connect(self):
        """Start alice with ``--connect bob``; return (path, seconds to
        connect as a user waits for it, punch seconds as alice printed).

        path is what both peers printed (``direct``), ``failed`` when both
        gave up punching, or ``one-way`` when only one side connected.
        Connected peers must have settled on an endpoint of each other (see
        :meth:`_endpoint_kind`); ``self.via`` then says which.
        """
        started = self._alice_started = time.monotonic()
        self.alice = self._peer("alice", "--connect", "bob")
        wait = REGISTER_WAIT + self.punch_timeout + 5
        kind, m = self._expect_any(self.alice, {
            "connected": CONNECTED.format(peer="bob"), "unreachable": UNREACHABLE.format(peer="bob"),
            "notfound": NOT_FOUND}, wait, "alice connects or gives up")
        seconds = time.monotonic() - started
        if kind == "notfound":
            raise StepFailed("the relay did not know bob:\n" + self.transcript())
        bob_kind, b = self._expect_any(self.bob, {
            "connected": CONNECTED.format(peer="alice"), "unreachable": UNREACHABLE.format(peer="alice")},
            self.punch_timeout + 3, "bob connects or gives up")
        if kind == bob_kind == "connected":
            self.paths = {"alice": m.group("path"), "bob": b.group("path")}
            self.endpoints = {"alice": m.group("endpoint"), "bob": b.group("endpoint")}
            self.via = {"alice": self._endpoint_kind("alice", m.group("endpoint"), "bob"),
                        "bob": self._endpoint_kind("bob", b.group("endpoint"), "alice")}
            path = m.group("path")
            if b.group("path") != path:
                path = "alice: %s, bob: %s" % (path, b.group("path"))
            return path, seconds, float(m.group("seconds"))
        if kind == bob_kind == "unreachable":
            return "failed", None, None
        return "one-way", None, None

    def upgrade(self, wait):
        """A relayed chat: wait up to *wait* s for both peers to print ``now
        direct`` (a birthday search that hit after the relay fallback);
        return seconds from alice's start to the later of the two, or None.
        ``self.via`` then says where each settled."""
        deadline = time.monotonic() + wait
        endpoints = dict(self.endpoints)
        try:
            for name, peer in (("alice", "bob"), ("bob", "alice")):
                if self.paths[name] == "relayed":     # one already direct prints nothing
                    m = getattr(self, name).expect(NOW_DIRECT.format(peer=peer),
                                                   timeout=max(0.1, deadline - time.monotonic()))
                    endpoints[name] = m.group("endpoint")
        except AssertionError:        # procs.Proc.expect: not printed in time
            return None
        seconds = time.monotonic() - self._alice_started
        self.via = {"alice": self._endpoint_kind("alice", endpoints["alice"], "bob"),
                    "bob": self._endpoint_kind("bob", endpoints["bob"], "alice")}
        return seconds

    def exchange(self, tag="hello"):
        """A line from alice to bob, then one from bob to alice."""
        for src, dst, name in ((self.alice, self.bob, "alice"), (self.bob, self.alice, "bob")):
            text = "%s from %s" % (tag, name)
            self._send(src, text)
            self._expect(dst, r"^\[%s\]> %s$" % (name, re.escape(text)), LINE_WAIT,
                         "%r reaches the other side" % text)

    def delivered(self, src, dst, name, text, wait=LINE_WAIT):
        """Send *text* from *src*; True if *dst* printed it within *wait*."""
        self._send(src, text)
        try:
            self._expect(dst, r"^\[%s\]> %s$" % (name, re.escape(text)), wait, "")
            return True
        except StepFailed:
            return False

    def goodbye(self):
        """alice types /quit; bob sees her leave; both exit 0."""
        self._send(self.alice, "/quit")
        self._expect(self.bob, r"^\[alice\] has left the chat\.$", LINE_WAIT, "bob sees alice leave")
        self.quit()

    def quit(self):
        """/quit on every peer still running; each must exit with status 0."""
        for proc in self.peers():
            try:
                proc.send("/quit")
            except OSError:          # already exiting
                pass
        for name, proc in (("alice", self.alice), ("bob", self.bob)):
            try:
                status = proc.wait(LINE_WAIT)
            except subprocess.TimeoutExpired:
                status = "none: still running %g s after /quit" % LINE_WAIT
            if status != 0:
                raise StepFailed("%s exited with status %s:\n%s" % (name, status, self.transcript()))

    def lost_lines(self):
        return [line for proc in self.peers() for line in proc.lines["stdout"] if re.search(LOST, line)]

    def ignored_sources(self, proc):
        """Endpoints *proc* ignored datagrams from (its -v log)."""
        return sorted({m.group(1) for m in map(IGNORED.search, proc.lines["stderr"]) if m})

    def transcript(self):
        parts = []
        for name, proc in (("relay", self.relay), ("alice", self.alice), ("bob", self.bob)):
            if proc is not None:
                parts.append("--- %s: %s\n%s" % (name, " ".join(proc.argv[4:]), proc.transcript()))
        return "\n".join(parts)

    # -- helpers

    def _peer(self, name, *args):
        return start_peer(self.relay_addr, "--name", name, *args, *self.options,
                          prefix=self.lab.sites[name].host.command())

    def _expect(self, proc, pattern, wait, step):
        """Wait for a line of *proc* matching *pattern*; give up early if it exited."""
        deadline = time.monotonic() + wait
        while True:
            exited = proc.popen.poll() is not None
            if exited:
                proc.finish_output()       # after an exit: every line it wrote, read
            try:
                return proc.expect(pattern, timeout=0.0 if exited else
                                   max(0.0, min(0.5, deadline - time.monotonic())))
            except AssertionError:
                pass
            if exited or time.monotonic() >= deadline:
                why = "it exited with status %s" % proc.popen.poll() if exited else "within %g s" % wait
                raise StepFailed("%s: no line matching %r (%s)\n%s"
                                 % (step, pattern, why, self.transcript())) from None

    def _expect_any(self, proc, patterns, wait, step):
        """Wait for a line matching any of *patterns* (name -> regex);
        return (name, match)."""
        either = "|".join("(?:%s)" % re.sub(r"\(\?P<\w+>", "(", p) for p in patterns.values())
        line = self._expect(proc, either, wait, step).string
        for name, pattern in patterns.items():
            m = re.search(pattern, line)
            if m:
                return name, m
        raise AssertionError("unreachable")

    def _endpoint_kind(self, name, endpoint, peer):
        """Which of *peer*'s endpoints *name* connected to: ``public`` (the one
        the relay handed out), ``reflexive`` (its public IP, another port) or
        ``lan`` (an announced LAN endpoint). Anything else fails the step."""
        proc = getattr(self, name)
        handed = proc.expect(r"^punching a hole to %s at (\S+) \.\.\.$" % peer).group(1)
        site = self.lab.sites[peer]
        ip = endpoint.rsplit(":", 1)[0]
        if endpoint == handed:
            return "public"
        if ip == site.public_ip:
            return "reflexive"
        if ip == site.lan_ip:
            return "lan"
        raise StepFailed("%s connected to %s at %s, which is none of its endpoints (%s, LAN %s):\n%s"
                         % (name, peer, endpoint, handed, site.lan_ip, self.transcript()))

    def _send(self, proc, line):
        try:
            proc.send(line)
        except OSError as exc:       # it exited: its stdin is gone
            raise StepFailed("cannot type %r: %s (exit status %s)\n%s"
                             % (line, exc, proc.popen.poll(), self.transcript())) from None


# -- scenarios


def stop_pool(pool, futures):
    """Cancel the scenarios that have not started; if one still runs (we were
    interrupted), tear its lab down under it so that it ends at once."""
    for future in futures:
        future.cancel()
    if not all(f.done() for f in futures):
        topology.teardown_all()
    pool.shutdown(wait=True)


@dataclasses.dataclass
class PairOutcome:
    """One matrix cell as observed."""
    pair: tuple
    path: str = "error"            # direct | failed | one-way | error (the lab or a step broke)
    connect_seconds: float = None  # alice started -> alice printed "connected"
    punch_seconds: float = None    # as alice printed it
    problem: str = None            # the first step that failed, if any
    via: dict = None               # peer name -> endpoint kind it connected to
    first_path: str = None         # the path of the connect line, if it later went direct
    notes: str = ""
    transcript: str = ""
    wall_seconds: float = 0.0


def run_pair(profile_a, profile_b, *, punch_timeout=PUNCH_TIMEOUT, wait_direct=0.0):
    """alice behind *profile_a* connects to bob behind *profile_b*; on a
    direct path a line crosses each way and alice says goodbye. A relayed
    chat may go direct within *wait_direct* s (a birthday search): then the
    path is ``direct``, ``first_path`` ``relayed`` and ``connect_seconds``
    the time to the direct path."""
    out = PairOutcome((profile_a, profile_b))
    started = time.monotonic()
    try:
        with topology.Lab(profile_a, profile_b) as lab, Chat(lab, punch_timeout=punch_timeout) as chat:
            try:
                chat.start()
                out.path, out.connect_seconds, out.punch_seconds = chat.connect()
                if "relayed" in out.path and wait_direct:
                    seconds = chat.upgrade(wait_direct)
                    if seconds is not None:
                        out.first_path, out.path, out.connect_seconds = out.path, "direct", seconds
                out.via = chat.via
                if out.path == "direct":
                    chat.exchange()
                    chat.goodbye()
                else:
                    chat.quit()
            except StepFailed as exc:
                out.problem = str(exc).split("\n", 1)[0]
            if out.path != "direct":
                out.notes = _ignored_note(chat)
            out.transcript = chat.transcript()
    except (topology.LabError, OSError) as exc:
        out.problem = "lab: %s" % exc
    out.wall_seconds = time.monotonic() - started
    return out


SEARCH_LANDED = re.compile(r"^a probe from \S+ landed on extra socket \d+ after (\d+\.\d+) s$")


def search_seconds(outcome):
    """How long the birthday search took to land, as the symmetric side
    logged it (seconds from its punch), or None (no search, or the path was
    found another way)."""
    for line in outcome.transcript.splitlines():
        m = SEARCH_LANDED.search(line.split("| ", 1)[-1])
        if m:
            return float(m.group(1))
    return None


def run_trials(pairs, trials, *, jobs=1, wait_direct=0.0):
    """:func:`run_pair` for each of *pairs*, *trials* times (a fresh lab each
    time), *jobs* at once: {pair: [PairOutcome]}."""
    if jobs <= 1:
        return {pair: [run_pair(*pair, wait_direct=wait_direct) for _ in range(trials)]
                for pair in pairs}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    futures = {(pair, i): pool.submit(run_pair, *pair, wait_direct=wait_direct)
               for i in range(trials) for pair in pairs}
    try:
        return {pair: [futures[(pair, i)].result() for i in range(trials)] for pair in pairs}
    finally:
        stop_pool(pool, futures.values())


def _ignored_note(chat):
    notes = []
    for name, proc in (("alice", chat.alice), ("bob", chat.bob)):
        sources = chat.ignored_sources(proc) if proc is not None else []
        if sources:
            notes.append("%s ignored %s" % (name, ", ".join(sources)))
    return "; ".join(notes)


@dataclasses.dataclass
class IdleOutcome:
    """Chats that connected; the last one sat idle, then tried to talk."""
    paths: list = dataclasses.field(default_factory=list)   # each round's path
    relayed_first: int = 0        # rounds that connected relayed and then went direct
    dropped_connecting: int = 0   # packets the loss rules dropped until the last connect
    dropped: int = 0              # ... until the end of the idle time
    conntrack_timeouts: list = dataclasses.field(default_factory=list)
    lost_lines: list = dataclasses.field(default_factory=list)
    delivered: dict = dataclasses.field(default_factory=dict)   # sender -> bool
    goodbye: bool = False
    problem: str = None
    transcript: str = ""


def run_idle_chat(*, idle, keepalive, loss=0.0, rounds=1, udp_timeouts=None,
                  profiles=("port-restricted", "port-restricted")):
    """With *loss* on alice's NAT, connect a fresh relay, bob and alice
    *rounds* times (more rounds, more chances for the loss to hit
    registration, introduction and punching). The last chat stays silent for
    *idle* seconds; then the loss is lifted, a line goes each way and, if
    both arrived, alice says goodbye."""
    out = IdleOutcome()
    try:
        with topology.Lab(*profiles, udp_timeouts=udp_timeouts) as lab:
            if loss:
                lab.add_loss("alice", loss)
            for _ in range(rounds - 1):
                with Chat(lab, keepalive=keepalive) as chat:
                    _connect_round(chat, out)
                    if out.problem or out.paths[-1] != "direct":
                        out.transcript = chat.transcript()     # what went wrong, for the report
                        return out
            with Chat(lab, keepalive=keepalive) as chat:
                if _connect_round(chat, out) == "direct":
                    out.dropped_connecting = lab.dropped_by_loss("alice")
                    out.conntrack_timeouts = lab.udp_conntrack_timeouts("alice")
                    _idle_then_talk(chat, lab, out, idle, loss)
                out.transcript = chat.transcript()
    except (topology.LabError, OSError) as exc:
        out.problem = "lab: %s" % exc
    return out


UPGRADE_WAIT = 8.0       # a lossy round that connected relayed must be direct this soon


def _connect_round(chat, out):
    """One connect: its path, where a chat that starts relayed and moves
    direct within UPGRADE_WAIT counts as direct (under loss, alice can learn
    of the introduction seconds after bob, whose relay fallback then answers
    her first; the direct path follows) -- counted in ``relayed_first``."""
    try:
        chat.start()
        path = chat.connect()[0]
        if "relayed" in path and chat.upgrade(UPGRADE_WAIT) is not None:
            path = "direct"
            out.relayed_first += 1
        out.paths.append(path)
    except StepFailed as exc:
        out.problem = str(exc).split("\n", 1)[0]
        out.paths.append("error")
        out.transcript = chat.transcript()
    return out.paths[-1]


def _idle_then_talk(chat, lab, out, idle, loss):
    try:
        time.sleep(idle)
        out.lost_lines = chat.lost_lines()
        if loss:
            out.dropped = lab.dropped_by_loss("alice")
            lab.remove_loss("alice")
        out.delivered["alice"] = chat.delivered(chat.alice, chat.bob, "alice", "after the pause")
        out.delivered["bob"] = chat.delivered(chat.bob, chat.alice, "bob", "still here")
        if all(out.delivered.values()):
            chat.goodbye()
            out.goodbye = True
    except StepFailed as exc:
        out.problem = str(exc).split("\n", 1)[0]


# -- what a profile does to plain UDP, by RFC 4787's definitions

AGENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("bound %d" % s.getsockname()[1], flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "send":
        s.sendto(args[2].encode(), (args[0], int(args[1])))
        print("sent", flush=True)
    elif cmd == "recv":
        s.settimeout(float(args[0]))
        try:
            data, (ip, port) = s.recvfrom(2048)
            print("got %s from %s:%d" % (data.decode(), ip, port), flush=True)
        except socket.timeout:
            print("nothing", flush=True)
    elif cmd == "quiet":     # did anything arrive before a datagram we send ourselves now?
        me = ("127.0.0.1", s.getsockname()[1])
        s.sendto(b"#mark#", me)
        s.settimeout(float(args[0]))
        first = None
        try:
            while True:
                data, source = s.recvfrom(2048)
                if data == b"#mark#" and source == me:
                    break
                first = first or "got %s from %s:%d" % (data.decode(), source[0], source[1])
            print(first or "nothing", flush=True)
        except socket.timeout:
            print("lost the marker", flush=True)
"""


class Agent:
    """One UDP socket in a namespace, driven line by line over stdin."""

    def __init__(self, ns, port=0):
        self.proc = Proc([sys.executable, "-c", AGENT, str(port)], prefix=ns.command())
        self.port = int(self.proc.expect(r"^bound (\d+)$").group(1))

    def ask(self, command, wait=LINE_WAIT):
        lines = self.proc.lines["stdout"]
        seen = len(lines)
        self.proc.send(command)
        deadline = time.monotonic() + wait
        while len(lines) <= seen:
            if time.monotonic() > deadline or self.proc.popen.poll() is not None:
                raise StepFailed("agent gave no answer to %r:\n%s" % (command, self.proc.transcript()))
            time.sleep(0.01)
        return lines[seen]

    def send(self, ip, port, text):
        self.ask("send %s %d %s" % (ip, port, text))

    def source_of_next(self, wait):
        """(ip, port) the next datagram came from, or None if none came."""
        return self._source(self.ask("recv %g" % wait, wait + LINE_WAIT))

    def source_of_arrived(self):
        """(ip, port) of a datagram that has arrived already, or None.

        Not a wait for silence: a datagram we send ourselves now queues
        behind anything already delivered, and the lab's veth links hand a
        datagram on within its sender's send call (in practice), so one
        the other agent said it "sent" has arrived or was dropped by now."""
        answer = self.ask("quiet %g" % LINE_WAIT, 2 * LINE_WAIT)
        if answer == "lost the marker":
            raise StepFailed("agent did not receive its own marker:\n%s" % self.proc.transcript())
        return self._source(answer)

    @staticmethod
    def _source(answer):
        if answer == "nothing":
            return None
        ip, port = answer.rsplit(" ", 1)[1].rsplit(":", 1)
        return ip, int(port)


def _arrival(agent, where):
    source = agent.source_of_next(LINE_WAIT)
    if source is None:
        raise StepFailed("nothing arrived %s" % where)
    return source


def probe_profile(profile):
    """Put a host behind *profile*, with an open host and a stranger outside;
    return (mapping, filtering) in RFC 4787's words.

    Filtering is probed first (a reply, another port of the same address, a
    stranger's address), then mapping (the public port toward that other
    port and toward the stranger).
    """
    with topology.Lab(profile, "open") as lab:
        outside, bob_ip = lab.sites["bob"].host, lab.sites["bob"].public_ip
        agents = []
        try:
            for ns, port in ((lab.sites["alice"].host, 0), (outside, 5000), (outside, 5001),
                             (lab.relay, 5000)):
                agents.append(Agent(ns, port))
            inside, known, other_port, stranger = agents
            inside.send(bob_ip, 5000, "out")
            public = _arrival(known, "from behind %s at the open host" % profile)
            admitted = []
            for agent in (known, other_port, stranger):
                agent.send(public[0], public[1], "in")
                admitted.append(inside.source_of_arrived() is not None)
            inside.send(bob_ip, 5001, "out")
            port_to_other_port = _arrival(other_port, "at the open host's other port")[1]
            inside.send(topology.RELAY_IP, 5000, "out")
            port_to_stranger = _arrival(stranger, "at the stranger")[1]
        finally:
            for agent in agents:
                agent.proc.stop()
    if not admitted[0]:
        filtering = "drops replies"
    else:
        filtering = ("endpoint-independent" if admitted[2] else "address-dependent" if admitted[1]
                     else "address-and-port-dependent")
    mapping = ("address-and-port-dependent" if port_to_other_port != public[1] else
               "address-dependent" if port_to_stranger != public[1] else "endpoint-independent")
    return mapping, filtering
