"""The chats and groups as a view lists them: :class:`~peerpunch.events.ChatList`, when it changed.

Theory of operation
-------------------
After each call of the router (start, datagram_received, handle_line, tick,
quit) its effects pass through :meth:`ChatListWatch.after`, which appends
one ChatList if the list (:func:`listing`: the rows, chats in the order
opened then groups, and where plain lines go) differs from the last one
emitted. Building the list costs a few microseconds per chat, which the
file data path (thousands of datagrams a second) should not pay: a call
whose effects are only Send and Log, and in which the router acted on no
event that moves a chat (an introduction, a path found, a chat or request
ended: its *look*), cannot have changed a row, since every change of
state, path, encryption, key or current target comes with an event (a
Notice, Connected, the Secured of a handshake) or one of those.
"""

import functools

from .effects import Log, Send
from .events import ChatList, ChatRow, State
from .identity import fingerprint

QUIET = (Send, Log)
_QUIET = frozenset(QUIET)
_fingerprint = functools.lru_cache(maxsize=64)(fingerprint)     # a hash per key, not per look


def chat_row(chat, request=None):
    """The ChatRow of *chat*; *request*: its unanswered chat request, if any."""
    secure, peer = chat.secure, chat.peer
    state = chat.state.value
    if request is not None and request.asking and request.asked_at is not None:
        state = "pending"
    path = None
    if peer is not None and chat.state is not State.PUNCHING:
        path = "relayed" if peer.via_relay else "direct"
    encrypted = secure is not None and secure.encrypted
    key = secure.remote_key if encrypted and secure.ready else None
    return ChatRow(chat.partner, "chat", state, path, encrypted,
                   _fingerprint(key) if key is not None else None)


def listing(session):
    """(rows, current) of *session* now."""
    requests = session.consent.requests
    rows = [chat_row(chat, requests.get(name)) for name, chat in session.chats.items()]
    rows += [ChatRow(group.name, "group", "joined", None, True, None)
             for group in session.groups.machine.groups.values()]
    group = session.groups.current_group()
    current = session.table.current
    current = group.name if group is not None else current if current in session.chats else None
    return tuple(rows), current


class ChatListWatch:
    """The last list emitted, and the test for a new one."""

    def __init__(self, session):
        self.session = session
        self.last = ((), None)

    def after(self, effects, look):
        """*effects*, and a ChatList if the list changed (looked at only if
        *look*, or if an effect is more than a Send or Log)."""
        if not look and _QUIET.issuperset(map(type, effects)):     # at C speed
            return effects
        now = listing(self.session)
        if now == self.last:
            return effects
        self.last = now
        return effects + [ChatList(*now)]
