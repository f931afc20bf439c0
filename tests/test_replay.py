"""The anti-replay window, against a model that remembers everything."""

import random

import pytest

from peerpunch.replay import WINDOW, ReplayWindow


class Model:
    """What the window must decide: accept once, unless too far below the top."""

    def __init__(self):
        self.seen, self.top = set(), -1

    def update(self, counter):
        if counter in self.seen or counter < 0 or self.top - counter >= WINDOW:
            return False
        self.seen.add(counter)
        self.top = max(self.top, counter)
        return True


def test_replay_window_is_at_least_2048():
    assert WINDOW >= 2048


def test_replay_in_order_then_every_repeat_refused():
    w = ReplayWindow()
    assert all(w.update(i) for i in range(10000))
    assert not any(w.update(i) for i in range(10000))


def test_replay_reordering_within_window_all_accepted():
    w = ReplayWindow()
    order = list(range(WINDOW))
    random.Random(5).shuffle(order)
    assert all(w.update(i) for i in order)
    assert not any(w.check(i) for i in order)


def test_replay_too_old_refused_and_check_does_not_mark():
    w = ReplayWindow()
    w.update(100000)
    assert not w.check(100000 - WINDOW) and w.check(100000 - WINDOW + 1)
    assert w.check(100001) and w.check(100001)       # looking twice changes nothing
    assert not w.update(-1)


@pytest.mark.parametrize("seed", range(5))
def test_replay_matches_model_under_random_traffic(seed):
    rng = random.Random(seed)
    w, m = ReplayWindow(), Model()
    base = 0
    for _ in range(20000):
        r = rng.random()
        if r < 0.01:
            base += rng.randrange(1, 3 * WINDOW)       # big jumps, across wraps
        counter = max(0, base + rng.randrange(-WINDOW - 50, 200))
        base = max(base, counter)
        assert w.update(counter) == m.update(counter), counter
