"""The per-kind log rate limit (issue 10, finding G), on a fake clock."""

import logging
import re

from peerpunch import protocol as P
from peerpunch.effects import Log
from peerpunch.loglimit import KINDS, LogLimiter
from peerpunch.registry import Registry

SUMMARY = re.compile(r"^\.\.\. and ([\d,]+) more (.+) in the last (\d+) s$")


def refused(i):
    return Log(logging.WARNING, "refused 'u%d' from 192.0.2.1:5: relay full" % i, kind="full")


def run(limiter, events, tick_every=1.0):
    """Feed (time, Log) in order, ticking by the limiter's deadline as a
    loop would; return the (time, Log) lines written."""
    written = []
    for now, effect in events:
        deadline = limiter.next_deadline()
        if deadline is not None and deadline <= now:
            written += [(deadline, line) for line in limiter.tick(deadline)]
        written += [(now, line) for line in limiter.admit(effect, now)]
    return written


def summaries(lines):
    return [SUMMARY.match(line.text) for _, line in lines if SUMMARY.match(line.text)]


def test_loglimit_burst_writes_its_budget_then_one_exact_summary():
    limiter = LogLimiter(per_window=10, window=60.0)
    lines = run(limiter, [(i * 0.0005, refused(i)) for i in range(100_000)])   # 50 s
    assert [line for _, line in lines] == [refused(i) for i in range(10)]
    assert limiter.next_deadline() == 60.0
    assert limiter.tick(59.9) == []
    [summary] = limiter.tick(60.0)
    assert summary == Log(logging.WARNING,
                          "... and 99,990 more refused registrations (relay full) in the last 60 s")
    assert limiter.next_deadline() is None and limiter.tick(1000.0) == []
    assert limiter.suppressed == 99_990


def test_loglimit_flood_over_many_windows_counts_every_line_exactly():
    limiter = LogLimiter(per_window=10, window=60.0)
    events = [(i * 0.003, refused(i)) for i in range(100_000)]                # 300 s
    lines = run(limiter, events)
    lines += [(1e9, line) for line in limiter.flush(300.0)]
    plain = [line for _, line in lines if not SUMMARY.match(line.text)]
    counted = sum(int(m.group(1).replace(",", "")) for m in summaries(lines))
    assert len(plain) + counted == 100_000
    assert len(summaries(lines)) == 5 and len(plain) == 50
    for start in range(0, 300, 60):     # each window: at most its budget and one summary
        assert sum(1 for t, _ in lines if start <= t < start + 60) <= 11


def test_loglimit_a_late_line_gets_the_due_summary_first():
    limiter = LogLimiter(per_window=1, window=10.0)
    limiter.admit(refused(1), 0.0)
    limiter.admit(refused(2), 1.0)
    out = limiter.admit(refused(3), 15.0)      # no tick in between: the loop was busy
    assert [line.text for line in out] == [
        "... and 1 more refused registrations (relay full) in the last 10 s", refused(3).text]


def test_loglimit_kinds_have_separate_budgets():
    limiter = LogLimiter(per_window=2, window=60.0)
    for i in range(1000):
        limiter.admit(refused(i), 1.0)
    intro = Log(logging.INFO, "introduced 'a' at 1.2.3.4:5 to 'b' at 1.2.3.5:5", kind="introduced")
    assert limiter.admit(intro, 2.0) == [intro]


def test_loglimit_lines_without_a_kind_are_never_limited():
    limiter = LogLimiter(per_window=1, window=60.0)
    line = Log(logging.INFO, "relay listening on 0.0.0.0:8080")
    assert all(limiter.admit(line, 1.0) == [line] for _ in range(1000))
    assert limiter.next_deadline() is None


def test_loglimit_disabled_passes_everything():
    limiter = LogLimiter(per_window=1, window=60.0, enabled=False)
    assert sum(len(limiter.admit(refused(i), 1.0)) for i in range(1000)) == 1000
    assert limiter.flush(2.0) == []


def test_loglimit_flush_says_how_long_the_window_had_run():
    limiter = LogLimiter(per_window=1, window=60.0)
    for i in range(5):
        limiter.admit(refused(i), 100.0)
    [summary] = limiter.flush(112.4)
    assert summary.text == "... and 4 more refused registrations (relay full) in the last 12 s"


def test_loglimit_memory_is_per_kind_not_per_source():
    limiter = LogLimiter(per_window=1, window=60.0)
    for i in range(10_000):
        limiter.admit(Log(logging.WARNING, "refused from 10.%d.%d.1:5" % (i >> 8, i & 255),
                          kind="full"), 1.0)
    assert len(limiter._windows) == 1


def test_registry_event_lines_carry_kinds_the_limiter_knows():
    reg = Registry(max_users=2, max_seed_users=2, max_users_per_ip=2, verbose=True)
    effects = []
    for name, port in (("alice", 1), ("bob", 2), ("carol", 3)):
        effects += reg.datagram_received(P.encode(P.Register(name)), ("192.0.2.1", port), 0.0)
    effects += reg.datagram_received(P.encode(P.Register("alice")), ("192.0.2.9", 9), 0.0)
    effects += reg.datagram_received(P.encode(P.Connect("bob")), ("192.0.2.1", 1), 0.0)
    effects += reg.datagram_received(P.encode(P.SessionFinished()), ("192.0.2.1", 1), 0.0)
    effects += reg.datagram_received(b"junk", ("192.0.2.1", 1), 0.0)
    effects += reg.datagram_received(P.encode(P.Unregister()), ("192.0.2.1", 2), 0.0)
    effects += reg.tick(1000.0)
    kinds = {e.kind for e in effects if isinstance(e, Log)}
    assert {"registered", "full", "name_taken", "introduced", "ended", "dropped", "left",
            "expired"} <= kinds
    assert kinds - {None} <= set(KINDS)
