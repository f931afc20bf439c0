"""How the peer's events read on a terminal. Pure functions, no I/O.

Every word the user reads is here: the cores hand back events as data
(:class:`~peerpunch.events.Words` name their words in :data:`WORDS`), and
this module words them, HELP and the key-change banner included. Text from
the network is shown with its control characters made visible, so a peer
cannot move the cursor, clear the screen or forge a line of ours. The
relay's own text is never shown: a refusal is worded here from its code.
"""

import re

from . import events as E
from . import identity as ID
from . import protocol as P
from . import securing as SC
from . import answerwords, groupwords
from .groups import GroupMessage
from . import filewords as FWD

S = E       # the events, as this module has always called them

HELP = """commands:
  /connect NAME   start a chat with NAME (another one, if you are chatting)
  /leave [NAME]   end the current chat, or NAME's (or stop waiting, or leave group NAME)
  /msg NAME TEXT  send one line to NAME's chat only
  /switch NAME    send plain lines to NAME's chat (or group) from now on
  /chats          the open chats: path, encryption and round-trip time
  /invite NAME    make a group of the current chat and NAME (or add NAME to the current group)
  /join [GROUP]   join the group you were invited to (automatic with --wait)
  /members [GROUP] the group's members: path and round-trip time
  /status         who you are, what you are connected to, what your NAT does
  /whoami         your key's fingerprint
  /verify [NAME]  a safety code to compare with your peer (or NAME) by voice
  /trust [NAME]   accept the new key of a peer (or NAME) whose key changed
  /accept [NAME]  accept a chat request from someone new (/decline [NAME] refuses it)
  /block [NAME]   refuse NAME's chats, files and invitations for this run (alone: the list)
  /quit           say goodbye and exit (also Ctrl+C, Ctrl+D)
  /help           this text
  //text          send a line that begins with '/'"""

FAMILY_HINT = " (if this host has both, --bind [::]:0 gives this client a socket for both)"

WORDS = {
    # asking and waiting
    "bad_target": "cannot connect to {target!r}: {why}",
    "self": "you cannot connect to yourself",
    "already_waiting": "already waiting for {name} (/leave to stop)",
    "in_chat": "already in a chat; /leave it first",
    "already_asking": "already asking the relay for {name}",
    "too_many_chats": "already in {count} chats (or asking), as many as the relay allows;"
                      " /leave one first",
    "asking": "asking the relay for {name} ...",
    "target_not_found": "Target user not found.",
    "target_busy": "Target user is busy.",
    "request_unanswered": "no answer from the relay about {name}",
    "relay_unanswered": "no answer from the relay at {relay} after {seconds:g} s (is a relay"
                        " running there, and can UDP reach it?)",
    "stopped_asking": "stopped asking for {name}",
    "idle": "waiting for someone to connect (or type /connect NAME)",
    "first_while_waiting": "{name} connected to you first; no longer waiting for {target}",
    "first_while_asking": "{name} connected to you first; no longer asking for {target}",
    # lines
    "queue_full": "not sent: {count} lines already wait for the connection",
    "queued": "(queued until connected)",
    "held_blocked": "(held until you /trust or /leave)",
    "held_quiet": "(held: {name} has not been heard for a while; sent when it is)",
    "heard_again": "{name} is heard again: sending {count} held line(s)",
    "sent_quiet": "({name} has not been heard for a while: sent anyway, reported if not"
                  " delivered)",
    "unshown_left": "{count} line(s) from {name} were not shown (the chat ended without /trust)",
    "unshown_full": "{count} line(s) from {name} were not shown: more than {limit} arrived"
                    " before /trust",
    "not_sent": "{count} queued line(s) were not sent",
    "too_long": "not sent: a line may be {limit} KiB of UTF-8 at most",
    "not_sent_for": "{count} queued line(s) for {name} were not sent",
    "no_chat_for_line": "not in a chat: /connect NAME, or wait for someone to connect",
    "left": "left the chat with {name}",
    "no_chat": "not in a chat",
    # commands
    "usage_connect": "usage: /connect NAME",
    "usage_msg": "usage: /msg NAME TEXT",
    "usage_switch": "usage: /switch NAME",
    "no_such_chat": "no chat with {name} (/chats lists them)",
    "already_chatting": "already in a chat with {name}",
    "switched": "plain lines now go to {name}",
    "now_current": "the chat with {ended} ended; plain lines now go to {name}",
    "choose_chat": "plain lines now go to no one: /switch NAME or /msg NAME TEXT (chats: {names})",
    "no_current_chat": "not sent: which chat? /switch NAME or /msg NAME TEXT (chats: {names})",
    "incoming_chat": "{name} is opening a chat with you (plain lines still go to {current}):"
                     " /switch {name} or /msg {name} TEXT to talk to them",
    "unknown_command": "unknown command {command!r}: /help lists them",
    "help": HELP,
    # the path
    "bad_introduction": "the relay introduced {name} at {endpoint}, which is not an address a"
                        " peer can have",
    "family_mismatch": "{name} is reachable only over {theirs} and this client's socket is"
                       " {ours} only",
    "no_family": "cannot reach {name}: {why}" + FAMILY_HINT,
    "family_relayed": "{why}: trying through the relay at {relay}" + FAMILY_HINT,
    "punching": "punching a hole to {name} at {endpoint} ...",
    "relayed_only": "the chat goes through the relay at {relay} (no address family in common for"
                    " a direct path)",
    "relayed_for_now": "the chat goes through the relay at {relay} for now; still trying the"
                       " direct path",
    "now_relayed": "the direct path to {name} went quiet: going through the relay",
    "moved": "{name} moved to {endpoint}",
    "now_direct": "now direct with {name} at {endpoint}",
    "handshake_relayed": "the handshake with {name} is not getting through directly: trying"
                         " through the relay",
    "fallback": "no direct path to {name} yet: trying through the relay as well",
    "unreachable": "could not reach {name} at {endpoint}: no answer to {probes} probes in"
                   " {seconds:g} s ({why})",
    "why_family": "its endpoint is {theirs}, which this client's {ours} socket cannot reach,"
                  " and {tried} did not answer",
    "why_family_relay": "its endpoint is {theirs}, which this client's {ours} socket cannot"
                        " reach, and the relay did not carry our probes either",
    "why_ours": "{name} has only {theirs} addresses and knows this client only over {ours}: it"
                " may not be able to answer",
    "why_nats": "the NATs in between block a direct path",
    "search_spray": "your NAT is symmetric and {name}'s is not: searching for a direct path"
                    " ({sockets} extra sockets)",
    "search_probe": "{name}'s NAT is symmetric: searching for a direct path (up to {probes}"
                    " probes to {ip}, {seconds:g} s)",
}

WORDS.update(FWD.WORDS)
WORDS.update(answerwords.WORDS)
HELP += FWD.FILES_HELP          # /help and --help both list the file commands
WORDS["help"] = HELP


def sanitize(text):
    """*text* with every non-printable character written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c):
    code = ord(c)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


DELIVERED_MARK = "\u2713"      # a check mark


def format_event(event, tty=False):
    """The line(s) a person sees for *event*, or None for events not shown.
    *tty*: the lines go to a terminal (a person watching as they come)."""
    kind = type(event)
    if kind in _SECURE_WORDS:
        return _SECURE_WORDS[kind](event)
    if kind is S.Message:
        return "[%s]> %s" % (sanitize(event.partner), sanitize(event.text))
    if kind is GroupMessage:
        return groupwords.line(event, sanitize)
    if kind is S.Delivered:
        return _delivered(event) if tty else None
    if kind is S.NotDelivered:
        return _not_delivered(event)
    if kind is S.PeerLeft:
        return "[%s] has left the chat." % sanitize(event.username)
    if kind is S.Connected:
        security = "encrypted, key %s" % event.key if event.key else "unencrypted"
        return "connected to %s at %s (%s) %s, in %.2f s" % (
            sanitize(event.username), event.endpoint, event.path, security, event.seconds)
    if kind is S.ConnectionLost:
        return "connection to %s lost" % sanitize(event.username)
    if kind is S.Registered:
        return "registered as %s with relay %s" % (sanitize(event.username), event.relay)
    if kind is S.Failed:
        return sanitize(words(event))
    if kind is S.Alert:
        return "\n".join("!! " + sanitize(line) for line in words(event).split("\n"))
    if kind is S.Notice:
        return "\n".join(sanitize(line) for line in words(event).split("\n"))
    if kind is S.Closed:
        if event.exit_code == 0:
            return None
        reason = event.reason
        return "error: %s" % (reason if isinstance(reason, str) else format_event(reason))
    if kind is E.RelayRefused:
        return _format_refusal(event)
    if kind in FWD.EVENTS:
        return FWD.format_news(event, sanitize, tty)
    return _format_progress(event)


def _delivered(event):
    """A short mark under the lines typed, one per line delivered."""
    count = len(event.ids)
    if count == 0:
        return None
    return DELIVERED_MARK if count == 1 else "%s %d" % (DELIVERED_MARK, count)


_NOT_DELIVERED_WHY = {E.NO_ANSWER: "no answer", E.ENDED: "the chat ended"}


def _not_delivered(event):
    count = len(event.ids)
    return "%d line%s not delivered to %s (%s)" % (
        count, "" if count == 1 else "s", sanitize(event.partner),
        _NOT_DELIVERED_WHY.get(event.reason, "given up"))


def words(event):
    """The words of a :class:`~peerpunch.events.Words` event, fields filled
    in (fields that are Words worded first), not yet sanitized."""
    if event.what == "status":
        return _status(**event.fields)
    if event.what == "chats":
        return _chats(**event.fields)
    if event.what.startswith("group_") or event.what == "usage_invite":
        return groupwords.words(event)
    if event.what == "files":
        return FWD.files_table(event.fields["rows"], sanitize)
    if event.what == "which_transfer":
        return FWD.which(**event.fields)
    if event.what == "which_answer":
        return answerwords.which(**event.fields)
    template = WORDS.get(event.what)
    if template is None:
        return event.what
    fields = {k: words(v) if isinstance(v, E.Words) else v for k, v in event.fields.items()}
    return template.format(**fields)


def _chats(rows):
    """/chats: one line per chat, the current one marked."""
    if not rows:
        return "no open chats"
    return "\n".join("%s %s: %s, %s, %s%s" % (
        "*" if current else " ", name, state, "relayed" if relayed else "direct",
        "encrypted" if encrypted else "unencrypted",
        ", rtt %.0f ms" % (rtt * 1000) if rtt is not None else "")
        for name, state, relayed, encrypted, current, rtt in rows)


def _status(name, relay, state, chat=None, quiet=None, endpoint=None, relayed=False,
            waiting=None, mapping=None, silent=False):
    """/status: who we are, our chat, what we wait for, our NAT, the relay."""
    if quiet is not None:
        state = "connected, but %s has not been heard for %s" % (
            chat, "a while" if quiet < 0 else "%d s" % quiet)
    text = "you are %s at relay %s (%s)" % (name, relay, state)
    if chat is not None:
        text += "; peer %s at %s%s" % (chat, endpoint, " (relayed)" if relayed else "")
    if waiting is not None:
        text += "; waiting for %s to come online" % waiting
    if mapping is not None:
        text += "; your NAT: %s" % ("symmetric" if mapping == P.MAPPING_DEPENDENT else
                                    "one public endpoint per socket")
    if silent:
        text += "; the relay is not answering"
    return text


_REFUSALS = {
    P.ERROR_NAME_TAKEN: "the relay says the name %(name)s is in use",
    P.ERROR_RELAY_FULL: "the relay is full; try again later",
    P.ERROR_SELF: "the relay says you cannot connect to yourself",
    P.ERROR_BAD_REQUEST: "the relay could not accept our request",
    P.ERROR_NOT_REGISTERED: "the relay does not know us (we are not registered with it)",
    P.ERROR_RELAY_STOPPING: "the relay is stopping",
    P.ERROR_TOO_MANY_CHATS: "the relay says you hold as many chats as you may",
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
