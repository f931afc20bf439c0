"""The NAT lab: the real relay and peers behind real Linux NATs, each pair in
namespaces of its own (needs root, ip, iptables, nft and conntrack).

Every scenario a selected test needs is started at once on a small thread
pool (NATLAB_JOBS, default 3) when the first of these tests runs; each test
then waits for its own scenario and asserts on what the peers printed.
"""

import concurrent.futures
import functools
import os
import sys

import pytest

from .natlab import expected, profiles, runner, topology
from .natlab import require_lab

pytestmark = pytest.mark.natlab

LOSS = 0.2
KEEPALIVE = 2.0
LOSS_KEEPALIVE = 1.0       # more keep-alives in the idle chat: the loss is sure to hit some
UDP_TIMEOUT = 5            # conntrack's UDP timeouts on the NATs, both of them
IDLE = 12.0                # longer than two NAT timeouts
LOSS_IDLE = 8.0            # longer than the 3 keep-alives after which a peer is lost
LOSS_ROUNDS = 5            # fresh relay, bob and alice each round: ~12 drops while connecting
BIRTHDAY_TRIALS = 4        # per birthday pair, on top of the matrix's one


def scenario_of(name, params):
    """(key, callable, expected seconds) for the test *name* with *params*."""
    if name == "test_natlab_matrix_pair_takes_expected_path":
        pair = params["pair"]
        cell = expected.EXPECTED[pair]
        slow = cell.path != "direct" or cell.search
        wait = expected.SEARCH_WAIT if cell.search else 0.0
        return pair, functools.partial(runner.run_pair, *pair, wait_direct=wait), 8 if slow else 2
    if name == "test_natlab_birthday_search_goes_direct_every_time":
        return name, functools.partial(runner.run_trials, expected.BIRTHDAY_PAIRS, BIRTHDAY_TRIALS,
                                       wait_direct=expected.SEARCH_WAIT), \
            3 * BIRTHDAY_TRIALS * len(expected.BIRTHDAY_PAIRS)
    if name == "test_natlab_profile_has_its_rfc4787_behaviour":
        return params["profile"], functools.partial(runner.probe_profile, params["profile"]), 2
    if name == "test_natlab_loss_still_connects_and_keeps_the_peer":
        return name, functools.partial(runner.run_idle_chat, idle=LOSS_IDLE, keepalive=LOSS_KEEPALIVE,
                                       loss=LOSS, rounds=LOSS_ROUNDS), LOSS_IDLE + 7
    if name == "test_natlab_keepalive_outlasts_nat_timeout":
        return name, functools.partial(runner.run_idle_chat, idle=IDLE, keepalive=KEEPALIVE,
                                       udp_timeouts=(UDP_TIMEOUT, UDP_TIMEOUT)), IDLE + 3
    if name == "test_natlab_nat_timeout_bites_without_keepalive":
        return name, functools.partial(runner.run_idle_chat, idle=IDLE, keepalive=60,
                                       udp_timeouts=(UDP_TIMEOUT, UDP_TIMEOUT)), IDLE + 8
    return None


class Scenarios:
    """Runs the selected tests' scenarios concurrently, longest first."""

    def __init__(self, items, workers):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        wanted = [s for s in map(_scenario_of_item, items) if s is not None]
        self.futures = {}
        for key, run, _ in sorted(wanted, key=lambda s: -s[2]):
            self.futures[key] = self.pool.submit(run)

    def outcome(self, node):
        key, run, _ = _scenario_of_item(node)
        if key not in self.futures:
            self.futures[key] = self.pool.submit(run)
        return self.futures[key].result()

    def close(self):
        runner.stop_pool(self.pool, self.futures.values())


def _scenario_of_item(item):
    if getattr(item, "module", None) is not sys.modules[__name__]:
        return None
    callspec = getattr(item, "callspec", None)
    return scenario_of(getattr(item, "originalname", item.name), callspec.params if callspec else {})


@pytest.fixture(scope="session")
def natlab(request):
    require_lab()
    scenarios = Scenarios(request.session.items, int(os.environ.get("NATLAB_JOBS", "3")))
    yield scenarios
    scenarios.close()
    ours = "%s%d-" % (topology.FAMILY, os.getpid())
    left = [n for n in topology.list_namespaces() if n.startswith(ours)]
    assert not left, "namespaces left behind: %s" % left


@pytest.mark.parametrize("pair", expected.PAIRS, ids=[expected.pair_id(p) for p in expected.PAIRS])
def test_natlab_matrix_pair_takes_expected_path(natlab, request, pair):
    """alice connects to bob; both print the expected path and settle on the
    expected endpoints; on a direct path a line crosses each way and her
    goodbye reaches bob; otherwise both give up with 'could not reach'."""
    outcome = natlab.outcome(request.node)
    cell = expected.EXPECTED[pair]
    assert expected.matches(cell, outcome), \
        "%s via %s (expected %s via %s: %s)\n%s" % (
            outcome.path, outcome.via, cell.path, cell.via, cell.why or "-", outcome.transcript)


def test_natlab_birthday_search_goes_direct_every_time(natlab, request):
    """Each pair that needs a birthday search, again and again with fresh
    NATs (new random ports each time): every trial ends direct -- at once or
    after starting relayed -- on the expected endpoints, and a line crosses
    each way. (Not a speed test: `python -m tests.natlab birthday` measures.)"""
    results = natlab.outcome(request.node)
    for pair, outcomes in results.items():
        cell = expected.EXPECTED[pair]
        for outcome in outcomes:
            assert expected.matches(cell, outcome), "%s: %s via %s, %s\n%s" % (
                expected.pair_id(pair), outcome.path, outcome.via, outcome.problem,
                outcome.transcript)


@pytest.mark.parametrize("profile", sorted(expected.BEHAVIOUR))
def test_natlab_profile_has_its_rfc4787_behaviour(natlab, request, profile):
    assert natlab.outcome(request.node) == expected.BEHAVIOUR[profile]


def test_natlab_loss_still_connects_and_keeps_the_peer(natlab, request):
    """20 % loss both ways on alice's NAT: registration, introduction and
    punching still work, round after round, and keep-alive does not call
    the peer lost while the chat sits idle."""
    outcome = natlab.outcome(request.node)
    assert outcome.paths == ["direct"] * LOSS_ROUNDS, "%s (%d relayed first)\n%s" % (
        outcome.problem, outcome.relayed_first, outcome.transcript)
    assert outcome.dropped_connecting > 0, "the loss never hit a connection attempt"
    assert outcome.dropped > outcome.dropped_connecting, "the loss never hit the idle chat"
    assert outcome.lost_lines == [], outcome.transcript
    assert outcome.delivered == {"alice": True, "bob": True}, outcome.transcript
    assert outcome.goodbye, outcome.problem


def test_natlab_keepalive_outlasts_nat_timeout(natlab, request):
    """With the NATs forgetting UDP flows after 5 s, a chat idle for 12 s
    still delivers both ways, because --keepalive 2 holds the mappings."""
    outcome = natlab.outcome(request.node)
    assert outcome.paths == ["direct"], "%s\n%s" % (outcome.problem, outcome.transcript)
    assert outcome.conntrack_timeouts and max(outcome.conntrack_timeouts) <= UDP_TIMEOUT
    assert outcome.lost_lines == [], outcome.transcript
    assert outcome.delivered == {"alice": True, "bob": True}, outcome.transcript
    assert outcome.goodbye, outcome.problem


def test_natlab_nat_timeout_bites_without_keepalive(natlab, request):
    """The control: with keep-alive slower than the idle time, bob's NAT has
    forgotten the flow and alice's next line never arrives."""
    outcome = natlab.outcome(request.node)
    assert outcome.paths == ["direct"], "%s\n%s" % (outcome.problem, outcome.transcript)
    assert outcome.delivered["alice"] is False, outcome.transcript


def test_natlab_profiles_cover_the_matrix():
    """Every profile but the known-hard one is in the expected table, and
    every cell that is not direct says why."""
    in_table = {name for pair in expected.PAIRS for name in pair}
    assert in_table == set(profiles.PROFILES) - set(profiles.KNOWN_HARD)
    assert all(cell.why for cell in expected.EXPECTED.values() if cell.via != expected.PUBLIC)
