"""``peer.py --nat-check`` behind each NAT profile of the lab (needs root).

alice sits behind the profile; the relay runs by its real command line with
its default alternate port on the lab's one relay address; alice runs the check by its
real command line and we read the lines a user would. Every profile runs in
a lab of its own, all started at once on a small pool (NATLAB_JOBS).
"""

import concurrent.futures
import os
import re
import sys

import pytest

from .natlab import runner, topology
from .natlab import require_lab
from .procs import PEER, Proc, start_relay

pytestmark = pytest.mark.natlab

EIM = "endpoint-independent"
SYMMETRIC = "address/port-dependent, i.e. symmetric"
PORT_FILTER = "port-dependent"
NO_PORT_FILTER = "not port-dependent"
LIKELY_FILTERED = ("likely with most peers, symmetric ones after a birthday search of a few"
                   " seconds (endpoint-independent mapping, port-dependent filtering)")
LIKELY_OPEN = ("likely with most peers, symmetric ones included (endpoint-independent mapping,"
               " no port-dependent filtering)")

# profile -> (mapping, filtering, port preserved, verdict after "direct connections: ")
EXPECTED = {
    "open": (EIM, NO_PORT_FILTER, True,
             "likely with most peers, symmetric ones included (no NAT, no port-dependent filtering)"),
    "full-cone": (EIM, NO_PORT_FILTER, True, LIKELY_OPEN),
    "restricted": (EIM, NO_PORT_FILTER, True, LIKELY_OPEN),
    "port-restricted": (EIM, PORT_FILTER, True, LIKELY_FILTERED),
    "double": (EIM, PORT_FILTER, True, LIKELY_FILTERED),
    # --random-fully draws from 1024-65535: the local port comes back 1 time in ~64,000
    "symmetric": (SYMMETRIC, PORT_FILTER, False,
                  "with peers whose NAT is not symmetric (at once, or after a birthday search of"
                  " a few seconds if it filters by port); relayed with symmetric ones (symmetric"
                  " mapping)"),
}
WAIT = 20.0            # the check takes under 4 s even when the filtering answer never comes


def nat_check(profile):
    """Build a lab with alice behind *profile*; return (exit status, stdout
    lines, the alice Site, relay port, alternate port, transcript)."""
    with topology.Lab(profile, "open") as lab:
        relay, port = start_relay("-v", host=topology.RELAY_IP,
                                  prefix=lab.relay.command())
        check = None
        try:
            alt = int(relay.expect(r"STUN alternate port \S+:(\d+)$", "stderr").group(1))
            check = Proc([sys.executable, PEER, "--nat-check", "--relay",
                          "%s:%d" % (topology.RELAY_IP, port)],
                         prefix=lab.sites["alice"].host.command(), stdin=False)
            status = check.wait(WAIT)
            check.finish_output()           # the reader thread has taken the last line
            transcript = "--- relay\n%s\n--- nat-check\n%s" % (relay.transcript(), check.transcript())
            return status, list(check.lines["stdout"]), lab.sites["alice"], port, alt, transcript
        finally:
            for proc in (check, relay):
                if proc is not None:
                    proc.stop()


@pytest.fixture(scope="module")
def outcomes():
    require_lab()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=int(os.environ.get("NATLAB_JOBS", "3")))
    futures = {profile: pool.submit(nat_check, profile) for profile in EXPECTED}
    yield futures
    runner.stop_pool(pool, futures.values())


def field(lines, key):
    """The values of every line ``KEY: VALUE``."""
    return [l[len(key) + 2:] for l in lines if l.startswith(key + ": ")]


@pytest.mark.parametrize("profile", sorted(EXPECTED))
def test_natlab_nat_check_classifies_profile(outcomes, profile):
    status, lines, site, port, alt, transcript = outcomes[profile].result()
    mapping, filtering, preserved, verdict = EXPECTED[profile]
    assert status == 0, transcript
    assert field(lines, "relay") == ["%s:%d, alternate %s:%d" % (topology.RELAY_IP, port,
                                                                 topology.RELAY_IP, alt)], transcript
    (candidate,) = field(lines, "local candidates")
    lan_ip, local_port = candidate.rsplit(":", 1)
    assert lan_ip == site.lan_ip, transcript
    publics = [re.match(r"(\S+):(\d+) \(seen from the relay's (?:alternate )?port (\d+)\)$", p).groups()
               for p in field(lines, "public endpoint")]
    assert [(ip, int(seen)) for ip, _, seen in publics] == [(site.public_ip, port),
                                                            (site.public_ip, alt)], transcript
    assert field(lines, "mapping")[0].split(" (")[0] == mapping, transcript
    assert field(lines, "filtering")[0].split(" (")[0] == filtering, transcript
    assert field(lines, "port preserved")[0].startswith("yes" if preserved else "no"), transcript
    assert (publics[0][1] == local_port) is preserved, transcript
    assert field(lines, "verdict") == ["direct connections: " + verdict], transcript
