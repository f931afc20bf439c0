"""How the peer's events read on a terminal. Pure functions, no I/O.

Text from the network is shown with its control characters made visible, so
a peer cannot move the cursor, clear the screen or forge a line of ours. The
relay's own text is never shown: a refusal is worded here from its code.
"""

import re

from . import events as E
from . import protocol as P
from . import session as S


def sanitize(text):
    """*text* with every non-printable character written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c):
    code = ord(c)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def format_event(event):
    """The line(s) a person sees for *event*, or None for events not shown."""
    kind = type(event)
    if kind is S.ChatMessage:
        return "[%s]> %s" % (sanitize(event.username), sanitize(event.text))
    if kind is S.PeerLeft:
        return "[%s] has left the chat." % sanitize(event.username)
    if kind is S.Connected:
        return "connected to %s at %s (%s) %s, in %.2f s" % (
            sanitize(event.username), event.endpoint, event.path, event.security, event.seconds)
    if kind is S.ConnectionLost:
        return "connection to %s lost" % sanitize(event.username)
    if kind is S.Registered:
        return "registered as %s with relay %s" % (sanitize(event.username), event.relay)
    if kind in (S.Failed,):
        return sanitize(event.reason)
    if kind is S.Alert:
        return "\n".join("!! " + sanitize(line) for line in event.text.split("\n"))
    if kind is S.Notice:
        return "\n".join(sanitize(line) for line in event.text.split("\n"))
    if kind is S.Closed:
        if event.exit_code == 0:
            return None
        reason = event.reason
        return "error: %s" % (reason if isinstance(reason, str) else format_event(reason))
    if kind is E.RelayRefused:
        return _format_refusal(event)
    return _format_progress(event)


_REFUSALS = {
    P.ERROR_NAME_TAKEN: "the relay says the name %(name)s is in use",
    P.ERROR_RELAY_FULL: "the relay is full; try again later",
    P.ERROR_SELF: "the relay says you cannot connect to yourself",
    P.ERROR_BAD_REQUEST: "the relay could not accept our request",
    P.ERROR_NOT_REGISTERED: "the relay does not know us (we are not registered with it)",
    P.ERROR_RELAY_STOPPING: "the relay is stopping",
}
_PLAIN_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")


def _format_refusal(event):
    """A RelayRefused: our words for its code, never the relay's text."""
    words = _REFUSALS.get(event.code)
    if words is None:
        code = event.code if _PLAIN_CODE.match(event.code) else "not shown: not a plain word"
        words = "the relay refused (code %s)" % code
    line = words % {"name": sanitize(event.username or "")}
    if event.when == E.REFUSED_LATER:
        line += " (someone else registered your name while the relay could not hear you)"
    elif event.when == E.REFUSED_REQUEST and event.username and event.code != P.ERROR_SELF:
        line += " (asking for %s)" % sanitize(event.username)
    return line


def _format_progress(event):
    """Lines about waiting, and about the relay and the punch taking time."""
    kind = type(event)
    if kind is E.Waiting:
        return "waiting for %s to come online (/leave or Ctrl+C to stop)" % sanitize(event.username)
    if kind is E.StoppedWaiting:
        return "stopped waiting for %s" % sanitize(event.username)
    if kind is E.Registering:
        return "registering as %s with relay %s ..." % (sanitize(event.username), event.relay)
    if kind is E.StillRegistering:
        return "still registering with relay %s (%.0f s) ..." % (event.relay, event.seconds)
    if kind is E.StillPunching:
        return "still trying to reach %s (%.0f s) ..." % (sanitize(event.username), event.seconds)
    if kind is E.RelayNotAnswering:
        return "relay %s is not answering (nothing for %.0f s); still trying" % (event.relay, event.seconds)
    if kind is E.RelayBack:
        return "relay %s is back" % event.relay
    if kind is E.RelayStopping:
        return "relay %s says it is stopping; registering again as soon as it is back" % event.relay
    return None
