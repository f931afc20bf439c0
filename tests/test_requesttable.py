"""The table of our requests alone: which request a relay's answer is for,
with a stub client and a fake clock."""

from peerpunch import events as E
from peerpunch.request import RequestEnded, RequestState
from peerpunch.requesttable import Requests


class Client:
    """What a Request asks of the relay client."""
    watches = False

    def connect_msg(self, name, session=None):
        return ("Connect", name)

    def register_now(self):
        return ("Register",)

    def register_soon(self, when):
        pass


def test_requests_a_refusal_naming_no_target_is_for_the_only_one_asking():
    table = Requests(Client())
    assert table.ask("bob", 0.0, None) == [E.Notice("asking", name="bob"), ("Connect", "bob")]
    assert table.failed(E.Failed("target_busy")) == [E.Failed("target_busy"), RequestEnded("bob")]
    table.drop("bob")
    table.ask("bob", 1.0, None)
    table.ask("carol", 1.0, None)
    assert [type(e).__name__ for e in table.failed(E.Failed("target_busy"))] == ["Log"]  # which?
    assert table.failed(E.Failed("target_busy"), "carol")[1] == RequestEnded("carol")


def test_requests_not_found_waits_and_online_asks_again_only_for_that_name():
    table = Requests(Client())
    table.ask("bob", 0.0, None)
    assert table.not_found("bob", 0.1) == [E.Failed("target_not_found"), E.Waiting("bob")]
    assert table["bob"].state is RequestState.WAITING and table.waiting() == ["bob"]
    assert [type(e).__name__ for e in table.not_found("carol", 0.2)] == ["Log"]   # not ours
    assert [type(e).__name__ for e in table.online("carol", 0.3)] == ["Log"]
    assert table.online("bob", 0.4) == [("Connect", "bob")]
    assert table.latest(RequestState.REQUESTING) is table["bob"]


def test_requests_an_introduction_drops_the_others_unless_several_are_held():
    table = Requests(Client())
    for name in ("bob", "carol", "dave"):
        table.ask(name, 0.0, None)
    table.introduced("carol", 1.0, keep_others=True)
    assert list(table) == ["bob", "carol", "dave"]
    assert table["carol"].state is RequestState.INTRODUCED
    table.introduced("carol", 2.0, keep_others=False)
    assert list(table) == ["carol"] and len(table.timers()) == 2
    table.settled("carol", 2.5)
    assert table["carol"].state is RequestState.SETTLED and table.nudge(3.0) == []
