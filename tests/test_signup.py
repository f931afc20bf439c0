"""The Signup machine alone (registering with the relay): its transitions,
its retries and what an ack teaches, with a fake clock and a counted
Register in place of the relay client."""

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch.signup import TRANSITIONS, RelayState, Signup
from peerpunch.timers import earliest, fire

TOKEN = "ab" * 16


class Client:
    """What a Signup asks of its client: a Register to send, and closed()."""

    def __init__(self):
        self.registers = 0
        self.closed = 0

    def register(self):
        self.registers += 1
        return "Register"

    def close(self):
        self.closed += 1


def signup(timeout=10.0):
    client = Client()
    return Signup("alice", "203.0.113.1:8080", timeout, client.register, client.close), client


def test_signup_retries_doubling_says_it_is_slow_then_gives_up_closed():
    s, client = signup(timeout=3.0)
    assert s.start(0.0) == [E.Registering("alice", "203.0.113.1:8080"), "Register"]
    times, said = [], []
    while earliest(s.timers()) is not None:
        now = earliest(s.timers())
        said += [e for e in fire(s.timers(), now) if e != "Register"]
        times.append(now)
    assert times == [0.5, 1.5, 2.0, 2.5, 3.0]        # 0.5, then every 1.0 s; the line at 2 s
    assert said[0] == E.StillRegistering("203.0.113.1:8080", 2.0)
    assert said[1] == E.Closed(1, E.Failed("relay_unanswered", relay="203.0.113.1:8080",
                                           seconds=3.0))
    assert s.state is RelayState.CLOSED and client.closed == 1 and client.registers == 4


def test_signup_ack_registers_once_and_stops_its_timers():
    s, client = signup()
    s.start(0.0)
    assert s.learn(TOKEN, ext=True, legacy=False) is False     # a relay of this version: no echo
    assert s.acked() == [E.Registered("alice", "203.0.113.1:8080")]
    assert s.state is RelayState.REGISTERED and s.token == TOKEN
    assert earliest(s.timers()) is None and s.acked() == []  # a second ack says nothing
    s.quit()
    assert s.state is RelayState.CLOSED and client.closed == 1


def test_signup_refused_name_closes_with_the_code():
    s, client = signup()
    s.start(0.0)
    out = s.refused(P.ERROR_NAME_TAKEN, E.REFUSED_REGISTERING)
    assert out == [E.Closed(1, E.RelayRefused(P.ERROR_NAME_TAKEN, "alice", E.REFUSED_REGISTERING))]
    assert s.state is RelayState.CLOSED and earliest(s.timers()) is None and client.closed == 1


def test_signup_cookie_sends_a_register_once_and_the_token_ends_it():
    s, client = signup()
    s.start(0.0)
    assert s.cookie_received("c00k1e") == ["Register"] and s.cookie == "c00k1e"
    assert s.cookie_received("c00k1e") == []                 # a copy changes nothing
    assert s.learn(None, ext=True, legacy=False) is False and s.cookie == "c00k1e"  # kept
    assert s.learn(TOKEN, ext=True, legacy=True) is True     # a new token: echo it at once
    assert s.cookie is None and s.learn(TOKEN, ext=True, legacy=True) is False
    assert s.learn(None, ext=False, legacy=True) is False and s.token is None     # a seed relay


def test_signup_transitions_name_only_its_states_and_end_closed():
    assert all(isinstance(k[0], RelayState) and isinstance(v, RelayState)
               for k, v in TRANSITIONS.items())
    assert {v for k, v in TRANSITIONS.items() if k[1] != "ack"} == {RelayState.CLOSED}
