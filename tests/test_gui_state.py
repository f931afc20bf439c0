"""The GUI's model (peerpunch.guistate), without Tk: events in, what the
window must redraw out, the words the terminal would show."""

from peerpunch import events as E
from peerpunch import guistate as G
from peerpunch import securing as SC
from peerpunch import transfer as T
from peerpunch.chatfiles import FileNews
from peerpunch.groupstate import GroupMessage

KEY = "1ecc-f82c-f3db-ddd7"
BOB = E.ChatRow("bob", "chat", "connected", "direct", True, KEY)
CAROL = E.ChatRow("carol", "chat", "connected", "relayed", False, None)
TID = "a92036c1fbc13ac9"


def model(*rows, current="bob"):
    m = G.Model("alice")
    m.event(E.ChatList(rows or (BOB,), current))
    return m


def texts(m, key=None):
    return [text for text, _ in m.lines(key)]


def offer(m, outgoing=False, total=1000):
    return m.event(FileNews("bob", T.FileOffered(TID, ("f.txt",), 1, total), outgoing,
                            ("f.txt",), 0))


def test_gui_state_chat_list_sets_rows_and_shows_the_current_chat():
    m = G.Model("alice")
    changes = m.event(E.ChatList((BOB, CAROL), "bob"))
    assert m.rows == (BOB, CAROL) and m.current == "bob" and m.shown == "bob"
    assert ("shown",) in changes and ("chats",) in changes
    assert G.row_status(BOB) == "direct, encrypted"
    assert G.row_status(CAROL) == "relayed, unencrypted"
    assert G.row_status(E.ChatRow("dave", "chat", "punching", None, False, None)) == \
        "punching, no path yet, unencrypted"
    assert G.row_status(E.ChatRow("#team", "group", "joined", None, True, None)) == \
        "group, encrypted"


def test_gui_state_a_message_goes_to_its_chat_in_the_terminals_words():
    m = model(BOB, CAROL)
    changes = m.event(E.Message("carol", "hi\x1b[2J", 1))
    assert texts(m, "carol") == ["[carol]> hi\\x1b[2J"]          # sanitized, as on a terminal
    assert texts(m) == []                                        # bob's is shown
    assert m.unread["carol"] == 1 and ("chats",) in changes
    m.show("carol")
    assert texts(m) == ["[carol]> hi\\x1b[2J"] and "carol" not in m.unread


def test_gui_state_a_group_message_goes_to_the_group():
    m = model()
    m.event(GroupMessage("#team", "carol", "hello all"))
    assert any("hello all" in t for t in texts(m, "#team"))


def test_gui_state_a_typed_plain_line_is_echoed_in_the_current_chat_not_a_command():
    m = model()
    assert m.typed("hello") == [("line", "bob", "[alice]> hello", "mine")]
    assert m.typed("/chats") == []
    m.typed("//not a command")
    assert texts(m) == ["[alice]> hello", "[alice]> /not a command"]
    assert model(current=None).typed("lost") == []       # no current chat: the core says so


def test_gui_state_events_naming_no_chat_go_to_the_shown_conversation():
    m = model(BOB, CAROL)
    m.event(E.Registered("alice", "127.0.0.1:8080"))       # our own name: no chat
    m.event(E.Notice("switched", name="bob"))
    assert texts(m) == ["registered as alice with relay 127.0.0.1:8080",
                        "plain lines now go to bob"]
    m.event(E.Notice("now_direct", name="carol", endpoint="127.0.0.1:7"))   # names carol
    assert texts(m, "carol") == ["now direct with carol at 127.0.0.1:7"]
    m.show(G.HOME)
    m.log("warning: something")
    assert texts(m) == ["warning: something"] and m.lines()[0][1] == "log"


def test_gui_state_an_offer_becomes_a_transfer_with_buttons_then_a_progress_bar():
    m = model()
    assert offer(m) == [("transfer", TID), ("line", "bob", texts(m)[0], "info")]
    assert m.transfers[TID].state == "offered"
    assert texts(m)[0].endswith("/accept a92036c1 or /decline a92036c1")
    m.event(FileNews("bob", T.FileAccepted(TID, 0), False, ("f.txt",), 0))
    changes = m.event(FileNews("bob", T.FileProgress(TID, 250, 1000, 1e5, 1.0), False,
                               ("f.txt",), 0))
    assert changes == [("transfer", TID)]                 # the bar shows it: no line
    assert m.transfers[TID].state == "moving" and G.percent(m.transfers[TID]) == 25.0
    m.event(FileNews("bob", T.FileReceived(TID, ("f.txt",), 1, 1000, ("/d/f.txt",)), False,
                     ("f.txt",), 0))
    assert m.transfers[TID].state == "done" and G.percent(m.transfers[TID]) == 100.0
    assert G.transfer_label(m.transfers[TID]) == "f.txt from bob: done"


def test_gui_state_our_offer_waits_and_a_failure_is_kept():
    m = model()
    offer(m, outgoing=True)
    assert m.transfers[TID].state == "waiting"
    m.event(FileNews("bob", T.FileFailed(TID, T.DECLINED_REASON, True), True, ("f.txt",), 0))
    assert m.transfers[TID].state == "failed"
    assert texts(m)[-1] == "transfer of f.txt to bob failed: declined by bob"


def test_gui_state_news_of_an_unknown_transfer_is_not_a_transfer():
    m = model()
    m.event(FileNews("bob", T.FileProgress(TID, 1, 2, None, None), False, ("f",), 0))
    assert not m.transfers


def test_gui_state_the_safety_code_is_a_dialog():
    m = model()
    changes = m.event(SC.SafetyCode("bob", "20215 34559"))
    assert changes[0][:2] == ("dialog", "safety code")
    assert changes[0][2].startswith("safety code with bob: 20215 34559\n")


def test_gui_state_a_chat_request_waits_for_an_answer():
    m = model()
    changes = m.event(E.Notice("chat_request", name="carol"))
    assert ("requests",) in changes and m.requests == ["carol"]
    m.event(E.Notice("chat_request", name="carol"))          # said again: one request
    assert m.requests == ["carol"]
    m.answered("carol")
    assert m.requests == []
    m.event(E.Notice("incoming_chat", name="dave", current="bob"))
    assert m.requests == []                                  # only the request itself counts
    m.event(E.Notice("chat_request", name="erin"))
    m.event(E.Notice("chat_request", name="fred"))
    assert ("requests",) in m.event(E.Notice("chat_accepted", name="erin"))   # typed /accept
    m.event(E.Notice("chat_request_expired", name="fred", seconds=60))
    assert m.requests == []


def test_gui_state_without_a_chat_list_connected_and_left_keep_the_list():
    m = G.Model("alice")
    m.event(E.Connected("bob", "127.0.0.1:5", "direct", 0.1, KEY))
    assert m.rows == (BOB,) and m.current == "bob" and m.shown == "bob"
    assert texts(m)[0].startswith("connected to bob at 127.0.0.1:5 (direct)")  # once
    assert len(texts(m)) == 1
    m.event(E.Connected("carol", "127.0.0.1:6", "relayed", 0.1, None))
    assert m.current == "bob"
    m.event(E.Notice("switched", name="carol"))
    assert m.current == m.shown == "carol"
    m.event(E.PeerLeft("carol"))
    assert m.current == "bob"
    m.event(E.PeerLeft("bob"))
    assert m.rows == () and m.current is None
    assert texts(m)[-1] == "[bob] has left the chat."


def test_gui_state_once_a_chat_list_came_the_core_keeps_the_list():
    m = model(BOB)
    m.event(E.Connected("carol", "127.0.0.1:6", "relayed", 0.1, None))
    assert m.rows == (BOB,)
    m.event(E.ChatList((BOB, CAROL), "carol"))
    assert m.current == m.shown == "carol"


def test_gui_state_a_conversation_keeps_its_last_lines():
    m = model()
    for i in range(G.MAX_LINES + 5):
        m.event(E.Message("bob", str(i), i))
    assert len(m.lines()) == G.MAX_LINES and m.lines()[-1][0] == "[bob]> %d" % (G.MAX_LINES + 4)


def test_gui_state_the_closing_error_is_shown():
    m = model()
    assert m.closed("error: no") == [("line", "bob", "error: no", "error")]
    assert m.closed(None) == []


def test_gui_state_only_the_last_finished_transfers_are_kept():
    m = model()
    for n in range(G.KEEP_ENDED + 2):
        tid = "%016x" % n
        m.event(FileNews("bob", T.FileOffered(tid, ("f",), 1, 5), False, ("f",), 0))
        changes = m.event(FileNews("bob", T.FileFailed(tid, T.DECLINED_REASON, False), False,
                                   ("f",), 0))
    assert changes[1] == ("transfer_gone", "%016x" % 1)
    offer(m)                                         # a live one is never forgotten
    assert list(m.transfers) == ["%016x" % n for n in range(2, G.KEEP_ENDED + 2)] + [TID]


def test_gui_state_a_request_whose_chat_is_gone_is_no_longer_asked():
    """The stranger left, or /block answered it without a word: the next
    ChatList no longer lists it pending, so its buttons go."""
    m = model()
    pending = E.ChatRow("carol", "chat", "pending", "direct", True, None)
    m.event(E.Notice("chat_request", name="carol"))
    m.event(E.ChatList((BOB, pending), "bob"))
    assert m.requests == ["carol"]
    assert ("requests",) in m.event(E.ChatList((BOB,), "bob"))
    assert m.requests == []
