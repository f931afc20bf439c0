"""The file-transfer commands: /send, /sendto, /accept, /decline, /cancel, /files.

Theory of operation
-------------------
Each is an entry of :data:`COMMANDS`, merged into the command table of
:mod:`peerpunch.commands`: a function of (session, argument, now) returning
effects. Arguments are split as a POSIX shell does (:func:`shlex.split`),
so a path with spaces is quoted (``/send "my file.txt"``) or escaped.

``/send PATH... [NAME]`` offers PATHs to the current chat; when there are
two words or more and the last one names an open chat, it is that chat
(to send a file whose name is also a chat's, write ``./NAME``); if that
last word is also an existing path, /send refuses to guess and says how.
``/sendto NAME PATH...`` says the chat first. A group (current, or named
``#GROUP`` in place of NAME) gets the files as :mod:`peerpunch.groupfiles`
says: each joined member is offered them. A transfer is named by its
id (or the first 4 or more hex digits of it) or by the partner's name;
``/accept``, ``/decline`` and ``/cancel`` without one take the only
transfer they can act on, and say so when there are several.
"""

import os
import shlex

from . import groupfiles
from . import transfer as T
from .events import Notice
from .filerecv import Receiver

ID_PREFIX = 4


def _words(arg):
    try:
        return shlex.split(arg)
    except ValueError:
        return None


def _send(session, arg, now):
    words = _words(arg)
    if not words:
        return [Notice("usage_send")]
    name = session.table.current
    if len(words) >= 2 and (words[-1] in session.chats or session.groups.named(words[-1])):
        if os.path.lexists(os.path.expanduser(words[-1])):
            return [Notice("send_ambiguous", name=words[-1])]
        name, words = words[-1], words[:-1]
    elif session.groups.current_group() is not None:
        return groupfiles.send(session, session.groups.current_group(), words)
    return _offer(session, name, words, now)


def _sendto(session, arg, now):
    words = _words(arg)
    if not words or len(words) < 2:
        return [Notice("usage_send")]
    return _offer(session, words[0], words[1:], now)


def _offer(session, name, paths, now):
    group = session.groups.named(name) if name and name not in session.chats else None
    if group is not None:
        return groupfiles.send(session, group, paths)
    chat = session.chats.get(name) if name else None
    if chat is None:
        return [Notice("no_such_chat", name=name)] if name else [Notice("no_chat_for_files")]
    return chat.files.offer(paths)


def collected(session, partner, result, now):
    """The shell hashed an offer's paths for *partner*'s chat (or a group's
    members: a GroupTarget): offer it."""
    if type(partner) is groupfiles.GroupTarget:
        return session.groups.settled(groupfiles.collected(session, partner, result, now), now)
    chat = session.chats.get(partner)
    if chat is None:
        if not isinstance(result, OSError):
            result[1].close()
        return [Notice("no_such_chat", name=partner)]
    return session.groups.settled(chat.files.collected(result, now) + chat.pump(now), now)


def _matches(session, arg, wanted):
    """(chat, id) of the transfers *arg* names whose state is in *wanted*
    (receivers only if *wanted* is an offer's)."""
    found = []
    for name, chat in session.chats.items():
        for tid, transfer in chat.files.transfers():
            if transfer.state not in wanted:
                continue
            if wanted == (T.OFFERED,) and type(transfer) is not Receiver:
                continue
            if not arg or arg == name or (len(arg) >= ID_PREFIX and tid.startswith(arg.lower())):
                found.append((chat, tid))
    return found


def _acting(verb, wanted, act):
    def command(session, arg, now):
        found = _matches(session, arg.strip(), wanted)
        if len(found) != 1:
            return [Notice("which_transfer", verb=verb, count=len(found),
                           ids=tuple(tid[:8] for _, tid in found))]
        chat, tid = found[0]
        act(chat.files, tid, now)
        return chat.pump(now)
    return command


def offers(session):
    """The ids (8 digits) of the offers /accept or /decline could take."""
    return tuple(tid[:8] for _, tid in _matches(session, "", (T.OFFERED,)))


def files_rows(session):
    """/files: each live transfer as data."""
    rows = []
    for name, chat in session.chats.items():
        for tid, transfer in chat.files.transfers():
            meter = transfer.meter
            rows.append((name, tid[:8], type(transfer) is not Receiver, transfer.state,
                         tuple(transfer.names), meter.done if meter else 0, transfer.total))
    return Notice("files", rows=tuple(rows))


COMMANDS = {
    "send": _send,
    "sendto": _sendto,
    "accept": _acting("accept", (T.OFFERED,), lambda files, tid, now: files.accept(tid, now)),
    "decline": _acting("decline", (T.OFFERED,), lambda files, tid, now: files.decline(tid)),
    "cancel": _acting("cancel", (T.OFFERED, T.SENDING, T.SENT, T.RECEIVING, T.ASSEMBLING),
                      lambda files, tid, now: files.cancel(tid)),
    "files": lambda session, arg, now: [files_rows(session)],
}
