"""The --json view: every event kind as docs/json.md documents it (the
schema is read from the doc's table, tests/jsondoc.py), progress paced, logs
kept off stdout, the end reported."""

import io
import json

import pytest

from peerpunch import chatfiles as CF
from peerpunch import events as E
from peerpunch import groupfiles as GF
from peerpunch import identity as ID
from peerpunch import securing as SC
from peerpunch import transfer as T
from peerpunch.groups import GroupMessage
from peerpunch.jsonevents import exit_json, plain, to_json
from peerpunch.jsonview import PROGRESS_EVERY, JsonView, dumps
from peerpunch.peershell import pump

from .jsondoc import SCHEMA, parse_line

KEY = bytes(range(32))
FPR = ID.fingerprint(KEY)
TID = "0123456789abcdef"


def news(event, outgoing=False, names=("a.bin",), sent=0, group=None):
    return CF.FileNews("bob", event, outgoing, names, sent, group)


class Clocks:
    def __init__(self):
        self.unix = 1796000000.25
        self.mono = 100.0

    def time(self):
        return self.unix

    def steady(self):
        return self.mono


def view():
    out, err, clocks = io.StringIO(), io.StringIO(), Clocks()
    return JsonView(out, err, clock=clocks.time, steady=clocks.steady), out, err, clocks


def lines(out):
    return [parse_line(line) for line in out.getvalue().splitlines()]


def shown(event):
    """*event* through a JsonView: its one object, parsed and validated."""
    v, out, err, _ = view()
    v.event(event)
    got = lines(out)
    assert len(got) == 1 and err.getvalue() == ""
    return got[0]


# (event, what its object must hold); together they give every documented
# kind but those the shell writes itself (start, exit: tested below)
EXAMPLES = [
    (E.Registering("alice", "127.0.0.1:8080"),
     {"event": "registering", "username": "alice", "relay": "127.0.0.1:8080"}),
    (E.StillRegistering("127.0.0.1:8080", 4.0),
     {"event": "still_registering", "relay": "127.0.0.1:8080", "seconds": 4.0}),
    (E.Registered("alice", "127.0.0.1:8080"),
     {"event": "registered", "username": "alice", "relay": "127.0.0.1:8080"}),
    (E.RelayNotAnswering("127.0.0.1:8080", 40.0),
     {"event": "relay_not_answering", "relay": "127.0.0.1:8080", "seconds": 40.0}),
    (E.RelayBack("127.0.0.1:8080"), {"event": "relay_back", "relay": "127.0.0.1:8080"}),
    (E.RelayStopping("127.0.0.1:8080"), {"event": "relay_stopping", "relay": "127.0.0.1:8080"}),
    (E.Waiting("bob"), {"event": "waiting", "partner": "bob"}),
    (E.StoppedWaiting("bob"), {"event": "stopped_waiting", "partner": "bob"}),
    (E.StillPunching("bob", 6.0), {"event": "still_punching", "partner": "bob", "seconds": 6.0}),
    (E.Connected("bob", "10.0.0.2:4000", "direct", 0.25, FPR),
     {"event": "connected", "partner": "bob", "endpoint": "10.0.0.2:4000", "path": "direct",
      "seconds": 0.25, "encrypted": True, "key": FPR}),
    (E.Message("bob", "hi \x1b[2J\u00e9\U0001f600", 7),
     {"event": "message", "partner": "bob", "text": "hi \x1b[2J\u00e9\U0001f600", "id": 7}),
    (E.Delivered("bob", (1, 2)), {"event": "delivered", "partner": "bob", "ids": [1, 2]}),
    (E.NotDelivered("bob", (3,), E.NO_ANSWER),
     {"event": "not_delivered", "partner": "bob", "ids": [3], "reason": "no_answer"}),
    (E.PeerLeft("bob"), {"event": "left", "partner": "bob", "by": "partner"}),
    (E.ConnectionLost("bob"), {"event": "connection_lost", "partner": "bob"}),
    (E.ChatList((E.ChatRow("bob", "chat", "connected", "relayed", True, FPR),
                 E.ChatRow("g1", "group", "joined", None, True, None)), "g1"),
     {"event": "chats", "current": "g1", "rows": [
         {"name": "bob", "kind": "chat", "state": "connected", "path": "relayed",
          "encrypted": True, "key": FPR},
         {"name": "g1", "kind": "group", "state": "joined", "path": None, "encrypted": True,
          "key": None}]}),
    (SC.Secured("bob", KEY, ID.NEW), {"event": "secured", "partner": "bob", "key": FPR,
                                      "verdict": "new"}),
    (SC.KeyChanged("bob", KEY, bytes(32)),
     {"event": "key_changed", "partner": "bob", "pinned": FPR, "presented": ID.fingerprint(bytes(32))}),
    (SC.Unencrypted("bob", None), {"event": "unencrypted", "partner": "bob", "pinned": None}),
    (SC.Trusted("bob"), {"event": "trusted", "partner": "bob"}),
    (SC.SafetyCode("bob", "12345 67890"), {"event": "safety_code", "partner": "bob",
                                           "code": "12345 67890"}),
    (SC.WhoAmI("alice", KEY), {"event": "whoami", "username": "alice", "key": FPR}),
    (GroupMessage("g1", "carol", "yo"),
     {"event": "group_message", "group": "g1", "sender": "carol", "text": "yo"}),
    (E.Notice("group_joined", group="g1", name="carol"),
     {"event": "group", "what": "group_joined", "group": "g1", "name": "carol",
      "text": "group g1: carol joined", "fields": {"group": "g1", "name": "carol"}}),
    (GF.GroupSendDone("g1", ("a.bin",), ("bob",), (("carol", T.DECLINED_REASON),)),
     {"event": "group_file_done", "group": "g1", "names": ["a.bin"], "sent": ["bob"],
      "failed": [{"name": "carol", "reason": "declined"}]}),
    (news(T.FileOffered(TID, ("a.bin",), 1, 1000)),
     {"event": "file_offer", "id": TID, "partner": "bob", "outgoing": False, "names": ["a.bin"],
      "group": None, "count": 1, "total": 1000}),
    (news(T.FileAccepted(TID, 0), outgoing=True),
     {"event": "file_accepted", "id": TID, "outgoing": True, "resumed": 0}),
    (news(T.FileProgress(TID, 500, 1000, 250.0, None)),
     {"event": "file_progress", "id": TID, "done": 500, "total": 1000, "rate": 250.0,
      "eta": None}),
    (news(T.FileReceived(TID, ("a.bin",), 1, 1000, ("/down/a.bin",))),
     {"event": "file_done", "outgoing": False, "where": ["/down/a.bin"], "total": 1000}),
    (news(T.FileFailed(TID, T.DECLINED_REASON, True), outgoing=True),
     {"event": "file_failed", "reason": "declined", "remote": True,
      "text": "transfer of a.bin to bob failed: declined by bob"}),
    (E.Notice("switched", name="bob"),
     {"event": "notice", "what": "switched", "text": "plain lines now go to bob",
      "fields": {"name": "bob"}}),
    (E.Failed("target_not_found"),
     {"event": "error", "what": "target_not_found", "text": "Target user not found.",
      "fields": {}}),
    (E.Alert("unshown_left", count=2, name="bob", limit=256),
     {"event": "alert", "what": "unshown_left", "fields": {"count": 2, "name": "bob",
                                                          "limit": 256}}),
]


def test_examples_cover_every_documented_kind():
    kinds = {shown(e)["event"] for e, _ in EXAMPLES}
    assert kinds | {"start", "exit", "other"} == set(SCHEMA)     # these three: tests below


@pytest.mark.parametrize("event,expected", EXAMPLES)
def test_jsonview_event_holds_its_documented_fields(event, expected):
    obj = shown(event)
    assert {k: obj[k] for k in expected} == expected
    assert obj["time"] == 1796000000.25 and obj["v"] == 1


def test_jsonview_unknown_words_and_events_without_words():
    class Mystery(E.Notice):
        pass
    assert shown(E.Notice("made_up_code", x=1))["text"] == "made_up_code"
    assert shown(Mystery("queued"))["what"] == "queued"
    assert to_json(object()) is None            # shows nothing on a terminal either
    assert to_json(E.Delivered("bob", ())) is None


def test_jsonview_other_kind_for_an_event_with_words_but_no_kind(monkeypatch):
    import peerpunch.jsonevents as J
    monkeypatch.setattr(J, "_MAPPERS", {})
    obj = shown(E.Waiting("bob"))
    assert obj == dict(obj, event="other", type="Waiting")
    assert obj["text"].startswith("waiting for bob to come online")


def test_jsonview_a_mapping_bug_costs_one_event_not_the_session(monkeypatch):
    import peerpunch.jsonevents as J
    monkeypatch.setitem(J._MAPPERS, E.Waiting, lambda e: 1 / 0)
    v, out, err, _ = view()
    v.event(E.Waiting("bob"))
    v.event(E.Message("bob", "still here", 1))
    assert [(o["event"], o.get("type")) for o in lines(out)] == [("other", "Waiting"),
                                                                 ("message", None)]
    assert "ZeroDivisionError" in err.getvalue()


def test_jsonview_network_text_is_escaped_never_raw():
    v, out, _, _ = view()
    v.event(E.Message("bob", "a\nb\r\x00\x1b[2J\u2028\U0001f600", 1))
    raw = out.getvalue()
    assert raw.count("\n") == 1 and raw.isascii() and "\x1b" not in raw
    assert json.loads(raw)["text"] == "a\nb\r\x00\x1b[2J\u2028\U0001f600"


def test_jsonview_text_field_is_the_terminal_line_made_safe():
    obj = shown(news(T.FileFailed(TID, T.CANCELLED_REASON, True), names=("x\x1b[31m",)))
    assert obj["names"] == ["x\x1b[31m"] and "\x1b" not in obj["text"]
    assert "x\\x1b[31m" in obj["text"]


def test_jsonview_our_own_leave_is_left_by_you():
    obj = shown(E.Notice("left", name="bob"))
    assert (obj["event"], obj["partner"], obj["by"]) == ("left", "bob", "you")


def test_jsonview_not_delivered_reasons_are_stable_words():
    assert shown(E.NotDelivered("bob", (1,), E.ENDED))["reason"] == "ended"


def test_jsonview_file_sent_is_file_done_outgoing():
    obj = shown(news(T.FileSent(TID, ("a.bin",), 1, 1000), outgoing=True, sent=1000))
    assert (obj["event"], obj["outgoing"], obj["sent"], obj["where"]) == ("file_done", True, 1000, None)


def test_jsonview_group_offer_names_the_group():
    assert shown(news(T.FileOffered(TID, ("a",), 1, 5), group="g1"))["group"] == "g1"


def test_jsonview_listing_rows_are_objects():
    obj = shown(E.Notice("chats", rows=(("bob", "connected", False, True, True, 0.012),)))
    assert obj["fields"]["rows"] == [{"name": "bob", "state": "connected", "relayed": False,
                                      "encrypted": True, "current": True, "rtt": 0.012}]
    obj = shown(E.Notice("files", rows=(("bob", TID[:8], True, "sending", ("a",), 5, 9),)))
    assert obj["fields"]["rows"][0]["partner"] == "bob" and obj["fields"]["rows"][0]["done"] == 5


def test_jsonview_errors_that_are_not_words_have_a_what():
    cases = [
        (E.RelayRefused("name-taken", "alice", E.REFUSED_REGISTERING), "relay_refused",
         {"code": "name-taken", "username": "alice", "when": "registering"}),
        (SC.Refused("bob", SC.NOT_PINNED, KEY), "refused",
         {"partner": "bob", "reason": "not-pinned", "key": FPR}),
        (SC.LinkFailed("bob", SC.TIMED_OUT), "link_failed", {"partner": "bob", "why": "timed-out"}),
        (CF.FileRefused("bob", CF.NOT_ENCRYPTED, None), "file_refused",
         {"partner": "bob", "why": "not_encrypted", "detail": None}),
    ]
    for event, what, fields in cases:
        obj = shown(event)
        assert (obj["event"], obj["what"], obj["fields"]) == ("error", what, fields)
        assert obj["text"]


def test_jsonview_notices_that_are_not_words_have_a_what():
    assert shown(SC.NothingToTrust("bob"))["what"] == "nothing_to_trust"
    assert shown(SC.NoSafetyCode(None))["what"] == "no_safety_code"
    obj = shown(CF.FileSkipped("bob", (("/x/link", "symlink"),)))
    assert obj["fields"]["skipped"] == [{"path": "/x/link", "why": "symlink"}]


def test_jsonview_nested_words_and_odd_values_are_plain_json():
    obj = shown(E.Failed("no_family", name="bob", why=E.Notice("why_nats")))
    assert obj["fields"]["why"] == {"what": "why_nats", "fields": {}}
    assert plain(float("nan")) is None and plain({1: {2}}) == {"1": [2]}
    assert plain(ID.NEW) == "new" and plain(E.State.IDLE) == "idle"


def test_jsonview_progress_is_paced_per_transfer_and_the_last_always_written():
    v, out, _, clocks = view()
    for done in range(100, 900, 100):          # 8 reports within a pace period
        v.event(news(T.FileProgress(TID, done, 1000, 1.0, 1.0)))
        v.event(news(T.FileProgress("f" * 16, done, 1000, 1.0, 1.0), outgoing=True))
        clocks.mono += PROGRESS_EVERY / 10
    clocks.mono += PROGRESS_EVERY
    v.event(news(T.FileProgress(TID, 950, 1000, 1.0, 1.0)))
    v.event(news(T.FileProgress(TID, 1000, 1000, 1.0, 0.0)))   # complete: never held back
    got = [(o["id"], o["done"]) for o in lines(out)]
    assert got == [(TID, 100), ("f" * 16, 100), (TID, 950), (TID, 1000)]


def test_jsonview_progress_pace_is_forgotten_when_the_transfer_ends():
    v, out, _, _ = view()
    v.event(news(T.FileProgress(TID, 1, 10, None, None)))
    v.event(news(T.FileFailed(TID, T.LOST, False)))
    v.event(news(T.FileProgress(TID, 2, 10, None, None)))
    assert [o["event"] for o in lines(out)] == ["file_progress", "file_failed", "file_progress"]


def test_jsonview_logs_go_to_stderr_as_text():
    v, out, err, _ = view()
    v.log("warning: cannot open another socket")
    assert out.getvalue() == "" and err.getvalue() == "warning: cannot open another socket\n"


def test_jsonview_start_is_written_as_given():
    v, out, _, _ = view()
    v.emit("start", username="alice", bound="0.0.0.0:1", relay="127.0.0.1:2", key=FPR,
           crypto="python")
    assert lines(out)[0]["crypto"] == "python"


@pytest.mark.parametrize("code,closed,what,text", [
    (0, E.Closed(0, "bye"), "bye", None),
    (1, E.Closed(1, E.Failed("relay_unanswered", relay="r:1", seconds=10.0)), "relay_unanswered",
     "no answer from the relay at r:1 after 10 s (is a relay running there, and can UDP reach"
     " it?)"),
    (1, E.Closed(1, E.RelayRefused("name-taken", "alice", E.REFUSED_REGISTERING)),
     "relay_refused", "the relay says the name alice is in use"),
    (1, "internal error: RuntimeError()", "internal_error", "internal error: RuntimeError()"),
    (1, None, "error", None),
])
def test_jsonview_exit_is_the_last_line_with_code_and_why(code, closed, what, text):
    v, out, _, _ = view()
    v.closed(code, closed)
    obj = lines(out)[0]
    assert (obj["event"], obj["code"], obj["what"], obj["text"]) == ("exit", code, what, text)
    assert exit_json(code, closed)["what"] == what


def test_jsonview_through_pump_every_line_is_one_object():
    import queue
    output = queue.Queue()
    for item in [("event", E.Registered("alice", "r")), ("log", "-v line"),
                 ("event", E.Message("bob", "hi", 1)), ("exit", 0, E.Closed(0, "bye"))]:
        output.put(item)
    v, out, err, _ = view()
    assert pump(output, v) == 0
    assert [o["event"] for o in lines(out)] == ["registered", "message", "exit"]
    assert err.getvalue() == "-v line\n"


def test_dumps_refuses_nan_rather_than_write_invalid_json():
    with pytest.raises(ValueError):
        dumps({"x": float("inf")})
