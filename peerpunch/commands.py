"""What the user types: a command, or a line for the chat.

Theory of operation
-------------------
:func:`handle_line` tells a command (``/name args``) from a chat line
(``//text`` sends ``/text``). Each command is one entry of :data:`COMMANDS`,
a function of (session, argument, now) that returns effects, like every
input of the router (:class:`~peerpunch.session.PeerSession`). What a
command shows is data (Notices naming their words, securing's SafetyCode,
WhoAmI ...): :mod:`peerpunch.console` words it.
"""

from . import answers, grouptable
from .events import Notice, State
from .filecommands import COMMANDS as FILE_COMMANDS
from .securing import NoSafetyCode, NothingToTrust, whoami


def handle_line(session, line, now):
    """A line the user typed: a command or a chat message."""
    if line.startswith("/") and not line.startswith("//"):
        name, _, arg = line[1:].strip().partition(" ")
        command = COMMANDS.get(name)
        if command is None:
            return [Notice("unknown_command", command=line.split()[0])]
        return command(session, arg.strip(), now)
    return session.send_text(line[1:] if line.startswith("//") else line, now)


def _connect(session, name, now):
    return session.connect(name, now) if name else [Notice("usage_connect")]


def _leave(session, name, now):
    group = session.groups.named(name)
    if group is not None:
        return session.groups.leave(group, now)
    return session.table.leave(now, name or None)


def _msg(session, arg, now):
    """/msg NAME text: one line to NAME's chat only."""
    name, _, text = arg.partition(" ")
    if not name or not text.strip():
        return [Notice("usage_msg")]
    chat = session.chats.get(name)
    if chat is None:
        return [Notice("no_such_chat", name=name)]
    return chat.typed(text, now)


def _switch(session, name, now):
    """/switch NAME: plain lines go to NAME's chat from now on."""
    if not name:
        return [Notice("usage_switch")]
    group = session.groups.named(name)
    if group is not None or name in session.chats:
        session.groups.switch(group)
    if group is not None:
        return [Notice("switched", name=name)]
    if name not in session.chats:
        return [Notice("no_such_chat", name=name)]
    session.table.current = name
    return [Notice("switched", name=name)]


def chats(table, pending=()):
    """/chats: each chat's partner, state ("pending" for the chat requests
    named in *pending*), path, encryption and the stream's smoothed
    round-trip time (None without a stream), as data."""
    rows = []
    for name, chat in table.chats.items():
        relayed = chat.peer is not None and chat.peer.via_relay
        encrypted = chat.secure is not None and chat.secure.encrypted
        state = "pending" if name in pending else chat.state.value
        rows.append((name, state, relayed, encrypted, name == table.current,
                     chat.lines.rtt))
    return Notice("chats", rows=tuple(rows))


def _verify(session, name, now):
    """/verify [NAME]: the safety code of NAME's chat (else the current one)."""
    if name and name not in session.chats:
        return [Notice("no_such_chat", name=name)]
    chat = session.chats.get(name or session.table.current)
    return [chat.verify() if chat is not None else NoSafetyCode(None)]


def _trust(session, name, now):
    """/trust [NAME]: accept a changed key (or an unencrypted peer whose key
    we had pinned) in NAME's chat, else the current one."""
    if name and name not in session.chats:
        return [Notice("no_such_chat", name=name)]
    chat = session.chats.get(name or session.table.current)
    return chat.trust(now) if chat is not None else [NothingToTrust(None)]


def status(session, now=None):
    """/status, as data for the console to word."""
    chat = session.table.current_chat()
    relay = session.relay
    fields = dict(name=session.username, relay=relay.endpoint, state=session.state.value,
                  waiting=relay.waits_for(), mapping=relay.mapping,
                  silent=relay.silent_since is not None)
    if chat is not None:
        fields.update(chat=chat.partner, endpoint=chat.peer.endpoint,
                      relayed=chat.peer.via_relay)
        if chat.state is State.CONNECTED and chat.path.suspect:     # the path went quiet
            fields["quiet"] = -1 if now is None else now - chat.path.last_heard
    return Notice("status", **fields)


COMMANDS = {
    "quit": lambda session, arg, now: session.quit(now),
    "connect": _connect,
    "leave": _leave,
    "msg": _msg,
    "switch": _switch,
    "chats": lambda session, arg, now: [chats(session.table, session.consent.asked())],
    "status": lambda session, arg, now: [status(session, now)],
    "help": lambda session, arg, now: [Notice("help")],
    "whoami": lambda session, arg, now: [whoami(session.username, session.identity)],
    "verify": _verify,
    "trust": _trust,
}
COMMANDS.update(grouptable.COMMANDS)
COMMANDS["exit"] = COMMANDS["q"] = COMMANDS["quit"]
COMMANDS.update(FILE_COMMANDS)
COMMANDS.update(answers.COMMANDS)      # /accept and /decline answer chat requests too
answers.guard(COMMANDS)
