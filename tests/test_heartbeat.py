"""The Heartbeat machine alone (the keep-alive of one path): when it pings,
when the path is suspect, when it is lost, with a fake clock and recording
callables in place of the path."""

from peerpunch.heartbeat import TRANSITIONS, Beat, Heartbeat
from peerpunch.timers import fire


class Owner:
    """Records what the heartbeat asks of its path."""

    def __init__(self):
        self.calls = []

    def heartbeat(self, interval=10.0):
        return Heartbeat(interval, suspected=self.on("suspected"), silent_long=self.long,
                         lost=self.on("lost"), ping=self.on("ping"))

    def on(self, name):
        def call():
            self.calls.append(name)
            return [name]
        return call

    def long(self):
        self.calls.append("silent_long")


def run(beat, end):
    """(time, effect) of every timer of *beat* due up to *end*."""
    out = []
    while beat.timer.when is not None and beat.timer.when <= end:
        now = beat.timer.when
        out += [(now, e) for e in fire([beat.timer], now)]
    return out


def test_heartbeat_pings_every_interval_while_heard():
    owner = Owner()
    beat = owner.heartbeat()
    beat.start(0.0)
    out = []
    for now in (5.0, 15.0, 25.0, 35.0):
        beat.heard(now)
        out += run(beat, now + 5.0)
    assert [t for t, e in out] == [10.0, 20.0, 30.0, 40.0] and beat.state is Beat.ALIVE
    assert owner.calls == ["ping"] * 4


def test_heartbeat_silence_makes_it_suspect_then_lost():
    owner = Owner()
    beat = owner.heartbeat()
    beat.start(0.0)
    out = run(beat, 100.0)
    times = {e: [t for t, x in out if x == e] for e in ("ping", "suspected", "lost")}
    assert times["suspected"] == [12.5]            # SUSPECT_AFTER = 1.25 intervals
    assert times["lost"] == [30.0] and beat.state is Beat.LOST and beat.timer.when is None
    assert times["ping"][:3] == [10.0, 12.5, 15.0]  # four times as often once suspect
    assert owner.calls.index("silent_long") > owner.calls.index("suspected")   # at 1.5 intervals
    assert [t for t, e in out][-1] == 30.0


def test_heartbeat_heard_again_ends_the_suspicion():
    owner = Owner()
    beat = owner.heartbeat()
    beat.start(0.0)
    run(beat, 13.0)
    assert beat.suspect
    beat.heard(13.0)
    assert beat.state is Beat.ALIVE and beat.last_heard == 13.0
    out = run(beat, 40.0)
    assert [t for t, e in out if e == "suspected"] == [25.5]   # a fresh 1.25 intervals
    assert "lost" not in [e for _, e in out]                   # 3 intervals: at 43 s


def test_heartbeat_transitions_name_only_its_states_and_lost_is_final():
    assert all(isinstance(k[0], Beat) and isinstance(v, Beat) for k, v in TRANSITIONS.items())
    assert {v for (s, _), v in TRANSITIONS.items() if s is Beat.LOST} == {Beat.LOST}


def test_heartbeat_reaches_lost_at_a_deadline_that_float_subtraction_falls_short_of():
    """last_heard + 3 * interval, then now - last_heard, can come out one
    float step under 3 * interval: the timer must not re-arm for the same
    instant (a fake clock ticking at the deadline would spin for ever)."""
    owner = Owner()
    beat = owner.heartbeat(5.0)
    beat.start(20.0)
    beat.heard(22.459999999999997)
    fired = 0
    while beat.state is not Beat.LOST:
        fire([beat.timer], beat.timer.when)
        fired += 1
        assert fired < 20, "re-armed at %r without moving" % beat.timer.when
    assert owner.calls.count("lost") == 1
