"""The NAT lab by hand (as root, from the repository's top directory):

    python -m tests.natlab up --a symmetric --b port-restricted
    python -m tests.natlab down
    python -m tests.natlab matrix [--jobs 3] [--only PROFILE]
    python -m tests.natlab birthday [--trials 20] [--jobs 3]
"""

import argparse
import concurrent.futures
import signal
import subprocess
import sys
import time

from ..procs import PEER, ROOT, env
from . import expected, profiles, runner, topology

UP_RELAY_PORT = 3478
UP_RELAY_LOG = "/tmp/%srelay.log" % topology.MANUAL_PREFIX


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.natlab", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=profile_help())
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build a lab and start its relay")
    up.add_argument("--a", default="port-restricted", choices=list(profiles.PROFILES), help="alice's NAT")
    up.add_argument("--b", default="port-restricted", choices=list(profiles.PROFILES), help="bob's NAT")
    up.add_argument("--udp-timeout", type=int, metavar="SECONDS",
                    help="conntrack UDP timeouts on the NATs (default 30 unreplied / 120 assured)")
    commands.add_parser("down", help="remove the lab built by up, and any left by a crashed run")
    matrix = commands.add_parser("matrix", help="run every pair and print the table")
    matrix.add_argument("--jobs", type=int, default=3, help="pairs run at once (default 3)")
    matrix.add_argument("--only", choices=list(profiles.PROFILES), help="only pairs with this profile")
    matrix.add_argument("--punch-timeout", type=float, default=runner.PUNCH_TIMEOUT)
    matrix.add_argument("-v", "--verbose", action="store_true",
                        help="print the transcript of every pair, not only of mismatches")
    birthday = commands.add_parser("birthday", help="repeat every pair with one symmetric side; print rates")
    birthday.add_argument("--trials", type=int, default=20, help="trials per pair (default 20)")
    birthday.add_argument("--jobs", type=int, default=3, help="trials run at once (default 3)")
    args = parser.parse_args(argv)
    reason = topology.missing_requirements()
    if reason:
        print("natlab: %s" % reason, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return {"up": cmd_up, "down": cmd_down, "matrix": cmd_matrix,
                "birthday": cmd_birthday}[args.command](args)
    except (topology.LabError, ValueError) as exc:
        print("natlab: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("natlab: interrupted; the lab is torn down", file=sys.stderr)
        return 130


def profile_help():
    return "NAT profiles:\n" + "\n".join("  %-24s %s" % (name, profiles.describe(name))
                                         for name in profiles.PROFILES)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)     # so finally blocks and atexit tear labs down


# -- up / down

def cmd_up(args):
    removed = topology.remove_manual()
    if removed:
        print("removed the previous lab (%d namespaces)" % len(removed))
    timeouts = (args.udp_timeout, args.udp_timeout) if args.udp_timeout else None
    lab = topology.Lab(args.a, args.b, prefix=topology.MANUAL_PREFIX, udp_timeouts=timeouts)
    try:
        lab.build()
        relay = start_detached_relay(lab)
    except BaseException:
        lab.teardown()
        raise
    peer = "ip netns exec %%s %s %s --relay %s" % (sys.executable, PEER, relay)
    print("\n".join(lab.describe()))
    print("relay running at %s (log: %s)\n" % (relay, UP_RELAY_LOG))
    print("in one terminal:   " + peer % lab.sites["bob"].host.name + " --name bob --wait")
    print("in another:        " + peer % lab.sites["alice"].host.name + " --name alice --connect bob")
    for name, site in lab.sites.items():
        for ns in site.nats[:1]:
            print("%-18s ip netns exec %s conntrack -L -p udp" % ("%s's NAT state:" % name, ns.name))
    print("when done:         %s -m tests.natlab down" % sys.executable.rsplit("/", 1)[-1])
    return 0


def start_detached_relay(lab):
    """Start the relay in the lab, outliving this command; return HOST:PORT."""
    addr = "%s:%d" % (topology.RELAY_IP, UP_RELAY_PORT)
    with open(UP_RELAY_LOG, "w") as log:
        subprocess.Popen(lab.relay.command(sys.executable, "-m", "peerpunch.relay", "--host",
                                           topology.RELAY_IP, "--port", str(UP_RELAY_PORT), "-v"),
                         cwd=ROOT, env=env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(UP_RELAY_LOG) as log:
            text = log.read()
        if "relay listening on" in text:
            return addr
        time.sleep(0.05)
    raise topology.LabError("the relay did not start:\n" + text)


def cmd_down(args):
    names = topology.remove_manual() + topology.remove_stale()
    print("removed %d namespaces%s" % (len(names), (": " + " ".join(names)) if names else ""))
    return 0


# -- matrix

def cmd_matrix(args):
    stale = topology.remove_stale()
    if stale:
        print("removed %d namespaces left by a crashed run" % len(stale))
    pairs = [p for p in expected.PAIRS if args.only is None or args.only in p]
    started = time.monotonic()
    outcomes = run_matrix(pairs, jobs=args.jobs, punch_timeout=args.punch_timeout)
    total = time.monotonic() - started
    mismatches = [o for o in outcomes if not matches(o)]
    for outcome in outcomes:
        if args.verbose or outcome in mismatches:
            print("=== %s / %s: %s\n%s\n"
                  % (outcome.pair + (outcome.problem or outcome.path, outcome.transcript)))
    print(format_table(outcomes))
    print("%d pairs in %.1f s with %d jobs: %d as expected, %d not"
          % (len(outcomes), total, args.jobs, len(outcomes) - len(mismatches), len(mismatches)))
    return 1 if mismatches else 0


def run_matrix(pairs, *, jobs=3, punch_timeout=runner.PUNCH_TIMEOUT):
    """Run *pairs* at most *jobs* at a time; outcomes in the order of *pairs*."""
    # Failing pairs wait out the punch timeout: start them first.
    order = sorted(pairs, key=lambda p: expected.EXPECTED[p].path == "direct" and not expected.EXPECTED[p].search)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    futures = {p: pool.submit(runner.run_pair, *p, punch_timeout=punch_timeout,
                              wait_direct=expected.SEARCH_WAIT if expected.EXPECTED[p].search else 0)
               for p in order}
    try:
        return [futures[p].result() for p in pairs]
    finally:
        runner.stop_pool(pool, futures.values())


def matches(outcome):
    return expected.matches(expected.EXPECTED[outcome.pair], outcome)


def format_table(outcomes):
    """The table, with each reason once as a footnote."""
    reasons = []
    rows = [("alice", "bob", "expected", "observed", "connect", "punch", "", "notes")]
    for o in outcomes:
        cell = expected.EXPECTED[o.pair]
        notes = []
        if cell.why:
            if cell.why not in reasons:
                reasons.append(cell.why)
            notes.append("[%d]" % (reasons.index(cell.why) + 1))
        notes += [n for n in (o.problem, o.notes) if n]
        if o.first_path:
            notes.append("%s first" % o.first_path)
        if o.via and set(o.via.values()) != {"public"}:
            notes.append("via " + ", ".join("%s->%s" % (k, v) for k, v in sorted(o.via.items())))
        rows.append((o.pair[0], o.pair[1], cell.path, o.path, _seconds(o.connect_seconds),
                     _seconds(o.punch_seconds), "ok" if matches(o) else "MISMATCH", " ".join(notes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines += ["[%d] %s" % (i + 1, why) for i, why in enumerate(reasons)]
    lines.append("connect: alice started -> alice printed 'connected' (or, for a chat that went"
                 " direct after starting relayed, -> both printed 'now direct'); punch: as alice"
                 " printed it;"
                 " via: which endpoint of the other peer each one settled on, when not the public"
                 " one the relay handed out (reflexive: same IP, another port; lan: announced"
                 " LAN endpoint)")
    return "\n".join(lines)


# -- birthday

def cmd_birthday(args):
    stale = topology.remove_stale()
    if stale:
        print("removed %d namespaces left by a crashed run" % len(stale))
    started = time.monotonic()
    pairs = [p for p in expected.PAIRS if p.count("symmetric") == 1]   # one symmetric side
    results = runner.run_trials(pairs, args.trials, jobs=args.jobs,
                               wait_direct=expected.SEARCH_WAIT)
    total = time.monotonic() - started
    failed = [o for outcomes in results.values() for o in outcomes
              if not expected.matches(expected.EXPECTED[o.pair], o)]
    for outcome in failed:
        print("=== %s / %s: %s\n%s\n" % (outcome.pair + (outcome.problem or outcome.path,
                                                        outcome.transcript)))
    print(format_trials(results))
    print("%d trials in %.1f s with %d jobs" % (sum(map(len, results.values())), total, args.jobs))
    return 1 if failed else 0


def format_trials(results):
    rows = [("alice", "bob", "trials", "direct", "direct at once", "search median", "search max",
             "connect median", "connect max")]
    for pair, outcomes in results.items():
        cell = expected.EXPECTED[pair]
        good = [o for o in outcomes if expected.matches(cell, o)]
        search = sorted(s for s in map(runner.search_seconds, good) if s is not None)
        connect = sorted(o.connect_seconds for o in good)
        rows.append((pair[0], pair[1], str(len(outcomes)),
                     "%d (%.0f %%)" % (len(good), 100.0 * len(good) / len(outcomes)),
                     str(sum(1 for o in good if o.first_path is None)),
                     _seconds(_median(search)), _seconds(search[-1] if search else None),
                     _seconds(_median(connect)), _seconds(connect[-1] if connect else None)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("direct: the chat ended up direct (at once, or relayed first and then 'now"
                 " direct') and a line crossed each way; search: the symmetric side's log, from"
                 " its punch to the probe that landed; connect: alice started -> both direct")
    return "\n".join(lines)


def _median(values):
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _seconds(value):
    return "-" if value is None else "%.2f s" % value


if __name__ == "__main__":
    sys.exit(main())
