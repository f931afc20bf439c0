"""The peer's events as JSON objects (``--json``). Pure functions, no I/O.

Theory of operation
-------------------
:func:`to_json` turns one event of the core (data: the namedtuples of
:mod:`peerpunch.events`, :mod:`peerpunch.securing`, :mod:`peerpunch.transfer`
wrapped in :class:`~peerpunch.chatfiles.FileNews`, groups', and the
:class:`~peerpunch.events.Words` notices) into a dict of JSON values: its
``event`` kind and that kind's fields, always the same keys for a kind (a
field without a value is null), as docs/json.md lists them. The view adds
``v`` and ``time``. Strings from the network go in as they are (the JSON
encoder escapes what needs escaping); ``text`` fields hold the line a
terminal would show (its control characters made visible). Keys are given
by fingerprint, never as bytes. An event this module does not know is
still reported, as kind ``other`` with the terminal's words, so nothing a
newer core emits is lost; events a terminal does not show either give None.
"""

import enum
import math

from . import chatfiles as CF
from . import events as E
from . import groupfiles as GF
from . import identity as ID
from . import securing as SC
from . import transfer as T
from .console import format_event
from .groups import GroupMessage

VERSION = 1
NOT_DELIVERED_WHY = {E.NO_ANSWER: "no_answer", E.ENDED: "ended"}

# rows of the Notices that list things, by the names of their columns
ROWS = {
    "chats": ("name", "state", "relayed", "encrypted", "current", "rtt"),
    "files": ("partner", "id", "outgoing", "state", "names", "done", "total"),
    "group_members": ("name", "state", "path", "rtt"),
}
MEMBERSHIP = frozenset((
    "group_started", "group_started_by", "group_inviting", "group_invited_you",
    "group_you_joined", "group_added", "group_joined", "group_left", "group_gone",
    "group_empty", "group_you_left", "group_invite_expired", "group_unreached",
    "group_not_joined"))


def to_json(event):
    """The JSON object (a dict) for *event*, or None if it shows nothing."""
    kind = type(event)
    mapper = _MAPPERS.get(kind)
    if mapper is not None:
        return mapper(event)
    if isinstance(event, E.Words):
        return _words(event)
    text = format_event(event)
    return None if text is None else {"event": "other", "type": kind.__name__, "text": text}


def exit_json(code, closed):
    """The last object: the exit *code* and why (*closed*: a Closed event,
    a string, or None)."""
    reason = closed.reason if type(closed) is E.Closed else closed
    if isinstance(reason, E.Words):
        what, text = reason.what, format_event(reason)
    elif type(reason) is E.RelayRefused:
        what, text = "relay_refused", format_event(reason)
    elif reason is None or reason == "bye":
        what, text = "bye" if code == 0 else "error", None
    else:
        what, text = "internal_error", str(reason)
    return {"event": "exit", "code": code, "what": what, "text": text}


def plain(value):
    """*value* as JSON values: tuples as lists, keys (bytes) as fingerprints,
    enums as their values, Words as {what, fields}, anything else as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, E.Words):
        return {"what": value.what, "fields": _fields(value)}
    if isinstance(value, (bytes, bytearray)):
        return ID.fingerprint(bytes(value))
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)


def _fingerprint(key):
    return None if key is None else ID.fingerprint(key)


def _fields(event):
    columns = ROWS.get(event.what)
    out = {}
    for name, value in event.fields.items():
        if name == "rows" and columns is not None:
            value = [dict(zip(columns, row)) for row in value]
        out[name] = plain(value)
    return out


def _words(event):
    """A Words event: notice, error (a Failed), alert, or group (membership)."""
    kind = "error" if isinstance(event, E.Failed) else "alert" if isinstance(event, E.Alert) \
        else "group" if event.what in MEMBERSHIP else "notice"
    out = {"event": kind, "what": event.what, "text": format_event(event),
           "fields": _fields(event)}
    if kind == "group":
        out["group"] = out["fields"].get("group")
        out["name"] = out["fields"].get("name")
    return out


def _said(kind, what, event, **fields):
    """An event that is not Words, reported as a notice or an error."""
    return {"event": kind, "what": what, "text": format_event(event), "fields": plain(fields)}


# -- the session


def _connected(e):
    return {"event": "connected", "partner": e.username, "endpoint": e.endpoint, "path": e.path,
            "seconds": plain(e.seconds), "encrypted": e.key is not None, "key": e.key}


def _message(e):
    return {"event": "message", "partner": e.partner, "text": e.text, "id": e.id}


def _delivered(e):
    return {"event": "delivered", "partner": e.partner, "ids": list(e.ids)} if e.ids else None


def _not_delivered(e):
    return {"event": "not_delivered", "partner": e.partner, "ids": list(e.ids),
            "reason": NOT_DELIVERED_WHY.get(e.reason, e.reason)}


def _left(e):
    return {"event": "left", "partner": e.username, "by": "partner"}


def _left_notice(e):
    return {"event": "left", "partner": e.fields.get("name"), "by": "you"}


def _relay(kind):
    return lambda e: {"event": kind, "relay": e.relay, "seconds": plain(e.seconds)}


def _chat_list(e):
    rows = [{"name": r.name, "kind": r.kind, "state": r.state, "path": r.path,
             "encrypted": bool(r.encrypted), "key": r.key} for r in e.rows]
    return {"event": "chats", "rows": rows, "current": e.current}


def _refused(e):
    return _said("error", "relay_refused", e, code=e.code, username=e.username, when=e.when)


# -- securing a chat


def _secured(e):
    return {"event": "secured", "partner": e.partner, "key": _fingerprint(e.key),
            "verdict": e.verdict}


def _key_changed(e):
    return {"event": "key_changed", "partner": e.partner, "pinned": _fingerprint(e.pinned),
            "presented": _fingerprint(e.presented)}


def _unencrypted(e):
    return {"event": "unencrypted", "partner": e.partner, "pinned": _fingerprint(e.pinned)}


# -- groups and files


def _group_message(e):
    return {"event": "group_message", "group": e.group, "sender": e.sender, "text": e.text}


def _group_done(e):
    return {"event": "group_file_done", "group": e.group, "names": list(e.names),
            "sent": list(e.sent), "failed": [{"name": m, "reason": why} for m, why in e.failed]}


def _file_news(e):
    news = e.event
    mapper = _FILE_NEWS.get(type(news))
    if mapper is None:
        return None
    out = {"event": None, "id": news.id, "partner": e.partner, "outgoing": bool(e.outgoing),
           "names": list(e.names)}
    out.update(mapper(e, news))
    return out


def _offer(e, news):
    return {"event": "file_offer", "group": e.group, "count": news.count, "total": news.total}


def _accepted(e, news):
    return {"event": "file_accepted", "resumed": news.resumed}


def _progress(e, news):
    return {"event": "file_progress", "done": news.done, "total": news.total,
            "rate": plain(news.rate), "eta": plain(news.eta)}


def _sent(e, news):
    return {"event": "file_done", "count": news.count, "total": news.total, "sent": e.sent,
            "where": None}


def _received(e, news):
    return {"event": "file_done", "count": news.count, "total": news.total, "sent": e.sent,
            "where": list(news.where)}


def _failed(e, news):
    return {"event": "file_failed", "reason": news.reason, "remote": bool(news.remote),
            "text": format_event(e)}


_FILE_NEWS = {T.FileOffered: _offer, T.FileAccepted: _accepted, T.FileProgress: _progress,
              T.FileSent: _sent, T.FileReceived: _received, T.FileFailed: _failed}

_MAPPERS = {
    E.Registering: lambda e: {"event": "registering", "username": e.username, "relay": e.relay},
    E.Registered: lambda e: {"event": "registered", "username": e.username, "relay": e.relay},
    E.StillRegistering: _relay("still_registering"),
    E.RelayNotAnswering: _relay("relay_not_answering"),
    E.RelayBack: lambda e: {"event": "relay_back", "relay": e.relay},
    E.RelayStopping: lambda e: {"event": "relay_stopping", "relay": e.relay},
    E.RelayRefused: _refused,
    E.Waiting: lambda e: {"event": "waiting", "partner": e.username},
    E.StoppedWaiting: lambda e: {"event": "stopped_waiting", "partner": e.username},
    E.StillPunching: lambda e: {"event": "still_punching", "partner": e.username,
                                "seconds": plain(e.seconds)},
    E.Connected: _connected,
    E.Message: _message,
    E.Delivered: _delivered,
    E.NotDelivered: _not_delivered,
    E.PeerLeft: _left,
    E.ConnectionLost: lambda e: {"event": "connection_lost", "partner": e.username},
    E.ChatList: _chat_list,
    SC.Secured: _secured,
    SC.KeyChanged: _key_changed,
    SC.Unencrypted: _unencrypted,
    SC.Trusted: lambda e: {"event": "trusted", "partner": e.partner},
    SC.SafetyCode: lambda e: {"event": "safety_code", "partner": e.partner, "code": e.code},
    SC.WhoAmI: lambda e: {"event": "whoami", "username": e.username, "key": _fingerprint(e.key)},
    SC.Refused: lambda e: _said("error", "refused", e, partner=e.partner, reason=e.reason,
                                key=_fingerprint(e.key)),
    SC.LinkFailed: lambda e: _said("error", "link_failed", e, partner=e.partner, why=e.why),
    SC.NothingToTrust: lambda e: _said("notice", "nothing_to_trust", e, partner=e.partner),
    SC.NoSafetyCode: lambda e: _said("notice", "no_safety_code", e, partner=e.partner),
    GroupMessage: _group_message,
    GF.GroupSendDone: _group_done,
    CF.FileNews: _file_news,
    CF.FileRefused: lambda e: _said("error", "file_refused", e, partner=e.partner, why=e.why,
                                    detail=e.detail),
    CF.FileSkipped: lambda e: _said("notice", "file_skipped", e, partner=e.partner, skipped=[
        {"path": path, "why": why} for path, why in e.skipped]),
}


_MAPPERS[E.Notice] = lambda e: _left_notice(e) if e.what == "left" else _words(e)
