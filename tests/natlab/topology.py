"""Network namespaces for the NAT lab: build one topology, always remove it.

Theory of operation
-------------------
A :class:`Lab` is one pair of peers (alice and bob) and a relay, each in its
own network namespace, every name starting with the lab's prefix
(``ppnl-<pid>-<n>-``, or ``ppnl-up-`` for the lab built by hand)::

    inet       bridge br0, the "internet": no address, no route
     |- relay      eth0 203.0.113.1/24                 (198.51.100.0/24 on link)
     |- alice-nat  wan 198.51.100.10/24, bridge lan 10.0.1.1/24
     |   `- alice      eth0 10.0.1.2/24, default via 10.0.1.1
     `- bob-nat    wan 198.51.100.20/24, bridge lan 10.0.2.1/24
         `- bob        eth0 10.0.2.2/24, default via 10.0.2.1

``open`` puts the peer itself on the bridge with the public address;
``double`` adds a carrier (``alice-cgn``: wan 198.51.100.10, lan
100.64.1.1/24) in front of the home router (wan 100.64.1.2/24);
``same-nat`` puts alice (10.0.1.2) and bob (10.0.1.3) on one router's LAN.

Only the peers and the home routers behind a carrier have a default route,
and it points into the lab; no namespace has a link to the host's network.
A packet for any address the lab did not create therefore dies inside it.

Teardown kills whatever still runs in the lab's namespaces and deletes them;
it runs on leaving the ``with`` block, at interpreter exit, and (for labs of
processes that died) in :func:`remove_stale` at the next run.
"""

import atexit
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

from . import profiles

FAMILY = "ppnl-"
MANUAL_PREFIX = FAMILY + "up-"
RELAY_IP = "203.0.113.1"
RELAY_NET = "203.0.113.0/24"
PUBLIC_NET = "198.51.100.0/24"
PUBLIC_IP = {"alice": "198.51.100.10", "bob": "198.51.100.20", "carol": "198.51.100.30"}
SITE_NUMBER = {"alice": 1, "bob": 2, "carol": 3}      # carol: only in a lab given profile_c
TOOLS = ("ip", "iptables", "nft", "conntrack")
PACKAGES = "iproute2 iptables nftables conntrack"
DEFAULT_UDP_TIMEOUTS = (30, 120)    # conntrack's unreplied / assured UDP timeouts

_counter = itertools.count(1)
_live = set()
_live_lock = threading.Lock()


class LabError(RuntimeError):
    """A command that builds or inspects the lab failed."""


def sh(argv, input=None, check=True):
    """Run *argv*; return its stdout. Raises LabError with stderr on failure."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError("%s: %s" % (" ".join(map(shlex.quote, argv)),
                                   (proc.stderr or proc.stdout).strip() or "exit %d" % proc.returncode))
    return proc.stdout


class Namespace:
    """One named network namespace."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Namespace(%r)" % self.name

    def command(self, *argv):
        """*argv* as a command line run inside this namespace."""
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, *argv, input=None):
        return sh(self.command(*argv), input=input)

    def ip(self, *args):
        return sh(["ip", "-n", self.name] + list(args))

    def write_sysctl(self, key, value):
        """Set a per-namespace sysctl (``net.ipv4.ip_forward``) without procps."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run("sh", "-c", 'echo "$1" > "$2"', "sh", str(value), path)

    def apply(self, rules):
        for line in rules.iptables:
            self.run("iptables", "-w", *shlex.split(line))
        if rules.nft:
            self.run("nft", "-f", "-", input=rules.nft)


class Site:
    """Where one peer lives: its namespace, addresses and NAT boxes."""

    def __init__(self, name, host, lan_ip, public_ip, nats):
        self.name = name
        self.host = host
        self.lan_ip = lan_ip
        self.public_ip = public_ip
        self.nats = nats          # Namespaces, outermost (internet side) first


class Lab:
    """Relay, alice behind *profile_a*, bob behind *profile_b* (and carol, site 3,
    behind *profile_c* if given).

    Use as a context manager: the namespaces exist inside the ``with`` block
    and are gone after it, whatever happened. *udp_timeouts* sets conntrack's
    (unreplied, assured) UDP timeouts on every NAT box.
    """

    def __init__(self, profile_a, profile_b, *, prefix=None, udp_timeouts=None, profile_c=None):
        for name in (profile_a, profile_b, profile_c):
            if name is not None and name not in profiles.PROFILES:
                raise ValueError("unknown NAT profile %r" % name)
        if (profile_a == profiles.SHARED_LAN) != (profile_b == profiles.SHARED_LAN) or \
                profile_c == profiles.SHARED_LAN:
            raise ValueError("%s describes both peers: use it for both" % profiles.SHARED_LAN)
        self.profiles = {"alice": profile_a, "bob": profile_b}
        self.site_names = ("alice", "bob")
        if profile_c is not None:         # a third peer, carol (site 3)
            self.profiles["carol"] = profile_c
            self.site_names += ("carol",)
        self.prefix = prefix or "%s%d-%d-" % (FAMILY, os.getpid(), next(_counter))
        self.udp_timeouts = udp_timeouts
        self.namespaces = []
        self.sites = {}
        self.relay = None
        self._torn_down = False

    def __enter__(self):
        with _live_lock:
            _live.add(self)
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()

    # -- building

    def build(self):
        inet = self._namespace("inet")
        inet.ip("link", "add", "br0", "type", "bridge")
        inet.ip("link", "set", "br0", "up")
        inet.write_sysctl("net.bridge.bridge-nf-call-iptables", 0)
        self.relay = self._namespace("relay")
        self._attach(self.relay, "eth0", RELAY_IP, RELAY_NET, PUBLIC_NET)
        if self.profiles["alice"] == profiles.SHARED_LAN:
            self._build_shared_lan()
        else:
            for name in self.site_names:
                self._build_site(name)

    def _namespace(self, role):
        ns = Namespace(self.prefix + role)
        sh(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def _attach(self, ns, ifname, ip, own_net, other_net):
        """Plug *ns* into the internet bridge as *ip* on *own_net*."""
        port = ns.name[len(self.prefix):][:15]
        ns.ip("link", "add", ifname, "type", "veth", "peer", "name", port, "netns", self.prefix + "inet")
        inet = self.prefix + "inet"
        sh(["ip", "-n", inet, "link", "set", port, "master", "br0", "up"])
        ns.ip("addr", "add", ip + "/24", "dev", ifname)
        ns.ip("link", "set", ifname, "up")
        ns.ip("route", "add", other_net, "dev", ifname)

    def _build_site(self, name):
        rule_sets = profiles.PROFILES[self.profiles[name]](self._mapping_lifetime())
        n = SITE_NUMBER[name]
        if not rule_sets:
            host = self._namespace(name)
            self._attach(host, "eth0", PUBLIC_IP[name], PUBLIC_NET, RELAY_NET)
            self.sites[name] = Site(name, host, PUBLIC_IP[name], PUBLIC_IP[name], [])
            return
        nats = self._nat_chain(name, n, rule_sets)
        host = self._lan_host(nats[-1], name, "10.0.%d.2" % n, "10.0.%d.1" % n)
        self.sites[name] = Site(name, host, "10.0.%d.2" % n, PUBLIC_IP[name], nats)

    def _build_shared_lan(self):
        rule_sets = profiles.PROFILES[profiles.SHARED_LAN](self._mapping_lifetime())
        nats = self._nat_chain("shared", 1, rule_sets, public_ip=PUBLIC_IP["alice"])
        for name, ip in (("alice", "10.0.1.2"), ("bob", "10.0.1.3")):
            host = self._lan_host(nats[-1], name, ip, "10.0.1.1")
            self.sites[name] = Site(name, host, ip, PUBLIC_IP["alice"], nats)

    def _nat_chain(self, name, n, rule_sets, public_ip=None):
        """NAT boxes from the internet inward; the innermost gets LAN bridge 10.0.n.1/24."""
        roles = ["%s-nat" % name] if len(rule_sets) == 1 else ["%s-cgn" % name, "%s-nat" % name]
        nats = [self._namespace(role) for role in roles]
        self._attach(nats[0], profiles.WAN, public_ip or PUBLIC_IP[name], PUBLIC_NET, RELAY_NET)
        if len(nats) == 2:
            carrier, home = nats
            carrier.ip("link", "add", profiles.LAN, "type", "veth", "peer", "name", profiles.WAN,
                       "netns", home.name)
            carrier.ip("addr", "add", "100.64.%d.1/24" % n, "dev", profiles.LAN)
            carrier.ip("link", "set", profiles.LAN, "up")
            home.ip("addr", "add", "100.64.%d.2/24" % n, "dev", profiles.WAN)
            home.ip("link", "set", profiles.WAN, "up")
            home.ip("route", "add", "default", "via", "100.64.%d.1" % n)
        inner = nats[-1]
        inner.ip("link", "add", profiles.LAN, "type", "bridge")
        inner.ip("addr", "add", "10.0.%d.1/24" % n, "dev", profiles.LAN)
        inner.ip("link", "set", profiles.LAN, "up")
        inner.write_sysctl("net.bridge.bridge-nf-call-iptables", 0)
        for ns, rules in zip(nats, rule_sets):
            ns.write_sysctl("net.ipv4.ip_forward", 1)
            if self.udp_timeouts:
                ns.write_sysctl("net.netfilter.nf_conntrack_udp_timeout", self.udp_timeouts[0])
                ns.write_sysctl("net.netfilter.nf_conntrack_udp_timeout_stream", self.udp_timeouts[1])
            ns.apply(rules)
        return nats

    def _lan_host(self, router, name, ip, gateway):
        host = self._namespace(name)
        host.ip("link", "add", "eth0", "type", "veth", "peer", "name", name, "netns", router.name)
        router.ip("link", "set", name, "master", profiles.LAN, "up")
        host.ip("addr", "add", ip + "/24", "dev", "eth0")
        host.ip("link", "set", "eth0", "up")
        host.ip("route", "add", "default", "via", gateway)
        return host

    def _mapping_lifetime(self):
        return (self.udp_timeouts or DEFAULT_UDP_TIMEOUTS)[1]

    # -- changing and inspecting a running lab

    def add_loss(self, site, probability):
        """Drop *probability* of UDP both ways on the WAN side of *site*'s outer NAT."""
        self.sites[site].nats[0].apply(profiles.random_loss(probability))

    def remove_loss(self, site):
        self.sites[site].nats[0].run("iptables", "-w", "-t", "mangle", "-F")

    def dropped_by_loss(self, site):
        """Packets the loss rules of *site* dropped so far."""
        saved = self.sites[site].nats[0].run("iptables-save", "-c", "-t", "mangle")
        return sum(int(line[1:].split(":", 1)[0]) for line in saved.splitlines()
                   if "natlab-loss" in line and line.startswith("["))

    def udp_conntrack_timeouts(self, site):
        """Seconds left on each UDP conntrack entry of *site*'s outer NAT."""
        listing = self.sites[site].nats[0].run("conntrack", "-L", "-p", "udp")
        return [int(line.split()[2]) for line in listing.splitlines() if line.startswith("udp")]

    def describe(self):
        """Lines for a person: where everything lives."""
        lines = ["relay  %-28s %s" % (self.relay.name, RELAY_IP)]
        for name, site in self.sites.items():
            path = " -> ".join(ns.name for ns in site.nats) or "(no NAT)"
            lines.append("%-6s %-28s %s, public %s via %s (%s)" % (
                name, site.host.name, site.lan_ip, site.public_ip, path, self.profiles[name]))
        return lines

    # -- teardown

    def teardown(self):
        """Kill what runs in the lab and delete its namespaces; idempotent."""
        if self._torn_down:
            return
        self._torn_down = True
        for ns in reversed(self.namespaces):
            delete_namespace(ns.name)
        with _live_lock:
            _live.discard(self)


def delete_namespace(name):
    """Kill the processes inside namespace *name*, then delete it."""
    pids = [int(p) for p in sh(["ip", "netns", "pids", name], check=False).split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 2
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.05)
        if not pids:
            break
    sh(["ip", "netns", "delete", name], check=False)


def list_namespaces():
    return [line.split()[0] for line in sh(["ip", "netns", "list"], check=False).splitlines()
            if line.strip()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stale_namespaces():
    """Namespaces of our family whose creating process is gone."""
    out = []
    for name in list_namespaces():
        owner = name[len(FAMILY):].split("-", 1)[0] if name.startswith(FAMILY) else ""
        if owner.isdigit() and not _alive(int(owner)):
            out.append(name)
    return out


def remove_stale():
    """Delete namespaces left by a run that crashed; return their names."""
    names = stale_namespaces()
    for name in names:
        delete_namespace(name)
    return names


def remove_manual():
    """Delete the lab built by ``python -m tests.natlab up``; return the names."""
    names = [n for n in list_namespaces() if n.startswith(MANUAL_PREFIX)]
    for name in reversed(names):
        delete_namespace(name)
    return names


@atexit.register
def teardown_all():
    """Tear down every lab this process still has (also on Ctrl+C or SIGTERM)."""
    with _live_lock:
        labs = list(_live)
    for lab in labs:
        lab.teardown()


def missing_requirements():
    """None if the lab can run here, else one line saying why not."""
    if os.geteuid() != 0:
        return "the NAT lab needs root (network namespaces, iptables, nft)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return "the NAT lab needs %s (apt-get install %s)" % (", ".join(missing), PACKAGES)
    probe = Namespace("%s%d-probe" % (FAMILY, os.getpid()))
    try:
        sh(["ip", "netns", "add", probe.name])
    except LabError as exc:
        return "cannot create network namespaces: %s" % exc
    try:
        probe.apply(profiles.symmetric(30)[0])
        probe.apply(profiles.full_cone(30)[0])
        probe.apply(profiles.random_loss(0.2))
        probe.run("conntrack", "-L")
    except LabError as exc:
        return "netfilter cannot do what the NAT lab needs: %s" % exc
    finally:
        delete_namespace(probe.name)
    return None
