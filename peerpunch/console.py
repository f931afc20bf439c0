"""How the peer's events read on a terminal. Pure functions, no I/O.

Text from the network is shown with its control characters made visible, so
a peer cannot move the cursor, clear the screen or forge a line of ours. The
relay's own text is never shown: a refusal is worded here from its code.
"""

import re

from . import events as E
from . import identity as ID
from . import protocol as P
from . import securing as SC
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
    if kind in _SECURE_WORDS:
        return _SECURE_WORDS[kind](event)
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


# -- securing a chat (peerpunch.securing)

def _alert(text):
    return "\n".join("!! " + sanitize(line) for line in text.split("\n"))


def _blocked_banner(partner, why):
    """The loud warning for a blocked chat: nothing is shown or sent until /trust or /leave."""
    bar = "@" * 64
    return _alert("\n".join((
        bar, "WARNING: " + why,
        "Someone may be impersonating %s. Nothing will be shown or sent" % partner,
        "until you type /trust (accept it) or /leave.", bar)))


def _secured(event):
    if event.verdict != ID.NEW:
        return None           # a changed key is worded by KeyChanged
    return "first chat with %s: key pinned" % sanitize(event.partner)


def _key_changed(event):
    partner = sanitize(event.partner)
    return _blocked_banner(partner, "%s's key has CHANGED: pinned %s, presented %s" % (
        partner, ID.fingerprint(event.pinned), ID.fingerprint(event.presented)))


def _unencrypted(event):
    partner = sanitize(event.partner)
    line = _alert("%s's client does not encrypt: anyone on the path can read and change this"
                  " chat" % partner)
    if event.pinned is None:
        return line
    return line + "\n" + _blocked_banner(
        partner, "%s's key is pinned, but this chat is unencrypted: a downgrade?" % partner)


_REFUSED = {
    SC.NOT_PINNED: "refused %(partner)s: key %(key)s is not pinned (--strict)",
    SC.PLAIN_STRICT: "%(partner)s's client does not encrypt: refused (--strict)",
    SC.PLAIN_REQUIRED: "%(partner)s's client does not encrypt: refused (--require-encryption)",
}


def _refused(event):
    key = ID.fingerprint(event.key) if event.key is not None else ""
    return _REFUSED[event.reason] % {"partner": sanitize(event.partner), "key": key}


def _link_failed(event):
    return "could not secure the chat with %s: no secure handshake within %g s" % (
        sanitize(event.partner), SC.HANDSHAKE_TIMEOUT)


def _safety_code(event):
    partner = sanitize(event.partner)
    return "safety code with %s: %s\ncompare it with %s by voice; if it differs, someone is" \
           " in between" % (partner, event.code, partner)


def _whoami(event):
    if event.key is None:
        return "you are %s; no identity key (encryption off)" % sanitize(event.username)
    return "you are %s, key %s" % (sanitize(event.username), ID.fingerprint(event.key))


_SECURE_WORDS = {
    SC.Secured: _secured,
    SC.KeyChanged: _key_changed,
    SC.Unencrypted: _unencrypted,
    SC.Refused: _refused,
    SC.LinkFailed: _link_failed,
    SC.Trusted: lambda event: "trusting %s now" % sanitize(event.partner),
    SC.NothingToTrust: lambda event: "nothing to trust",
    SC.SafetyCode: _safety_code,
    SC.NoSafetyCode: lambda event: "/verify needs an encrypted chat",
    SC.WhoAmI: _whoami,
}
