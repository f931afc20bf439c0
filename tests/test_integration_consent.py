"""Chat requests from strangers with the real relay and peers on 127.0.0.1
(issue 13): alice waits without --wait (she answered the prompt with an
empty line); carol, whom she never talked to, connects: alice is asked,
sees nothing of carol's until /accept (then carol is pinned, and connects
without a question next time); /decline ends carol's chat; /block makes
carol's next attempt go unanswered."""

import pytest

from .procs import CONNECTED, peer

pytestmark = pytest.mark.timeout(90)

QUESTION = r"^accept chat from carol\? /accept or /decline$"


def alice_asks(procs, relay, config=None):
    """alice, waiting without --wait (and -v: she logs the lines she holds)."""
    alice = peer(procs, relay, "--name", "alice", "-v", config=config)
    alice.send("")                         # the prompt's empty answer: wait for someone
    alice.expect("registered as alice")
    return alice


def carol_calls(procs, relay, *args):
    carol = peer(procs, relay, "--name", "carol", "--connect", "alice", *args)
    carol.expect(CONNECTED % "alice")
    return carol


def test_integration_consent_accept_shows_the_held_line_and_pins_carol(procs, relay, tmp_path):
    alice = alice_asks(procs, relay, config=str(tmp_path))
    carol = carol_calls(procs, relay)
    alice.expect(QUESTION)
    carol.send("hi alice, carol here")
    alice.expect(r"1 line\(s\) from carol held until /accept", stream="stderr")
    assert not alice.has(r"^\[carol\]>") and not alice.has(r"^connected to carol")
    alice.send("/accept")
    alice.expect(r"^accepted the chat with carol$")
    alice.expect(CONNECTED % "carol")
    alice.expect(r"^\[carol\]> hi alice, carol here$")
    alice.send("hello carol")
    carol.expect(r"^\[alice\]> hello carol$")
    known = (tmp_path / "peerpunch" / "known_peers").read_text()
    assert known.startswith("carol\t")

    alice.send("/quit")                    # carol is pinned now: no question next time
    assert alice.wait() == 0
    carol.expect(r"^\[alice\] has left the chat\.$")
    again = alice_asks(procs, relay, config=str(tmp_path))
    carol.send("/connect alice")
    again.expect(CONNECTED % "carol")
    carol.send("me again")
    again.expect(r"^\[carol\]> me again$")
    assert not again.has(QUESTION)


def test_integration_consent_decline_ends_carols_chat(procs, relay):
    alice = alice_asks(procs, relay)
    carol = carol_calls(procs, relay)
    alice.expect(QUESTION)
    carol.send("please?")
    alice.expect(r"1 line\(s\) from carol held", stream="stderr")
    alice.send("/decline")
    alice.expect(r"^declined the chat with carol$")
    carol.expect(r"^\[alice\] has left the chat\.$")
    alice.send("/chats")
    alice.expect(r"^no open chats$")
    assert not alice.has(r"^\[carol\]>|^connected to carol|not shown")


def test_integration_consent_block_refuses_carol_for_the_rest_of_the_run(procs, relay):
    alice = alice_asks(procs, relay)
    carol = carol_calls(procs, relay, "--punch-timeout", "2")
    alice.expect(QUESTION)
    alice.send("/block carol")
    alice.expect(r"^blocked carol for the rest of this run: chats, files and group invitations"
                 r" from carol are refused$")
    carol.expect(r"^\[alice\] has left the chat\.$")
    start = len(alice.lines["stdout"])
    carol.send("/connect alice")
    carol.expect(r"^(could not reach alice|could not secure the chat with alice)", timeout=40)
    alice.send("/block")
    alice.expect(r"^blocked for the rest of this run: carol$", start=start)
    assert [l for l in alice.lines["stdout"][start:] if "carol" in l] == [
        "blocked for the rest of this run: carol"]            # not a word of carol's attempt
    alice.send("/connect carol")
    alice.expect(r"^carol is blocked for the rest of this run$")
