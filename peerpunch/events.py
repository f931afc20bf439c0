"""Constants, states and the events a :class:`~peerpunch.session.PeerSession` returns.

Theory of operation
-------------------
Nothing here acts. The timing constants are the knobs of every retry in the
session (registration, introduction, punching, fallback, keep-alive); the
:class:`State` enum names the session's states, ``IN_CHAT`` the ones that
have a peer; the namedtuples are the events handed to the shell to show,
alongside :class:`~peerpunch.effects.Send` and
:class:`~peerpunch.effects.Log`. :mod:`peerpunch.session` re-exports all of
them, so callers keep importing them from there.

States and what moves between them::

    REGISTERING --RegisterAck--> IDLE            (no ack in 10 s: Closed(1))
    IDLE --/connect--> REQUESTING --PeerInfo--> PUNCHING
    IDLE --PeerInfo (someone asked for us)--> PUNCHING
    REQUESTING --TargetBusy | Error | no answer--> IDLE
    REQUESTING --TargetNotFound--> WAITING --Online from the relay--> REQUESTING
        (a watch kept by the relay; with a relay that keeps none, a Connect
        every WAIT_RETRY; /leave: IDLE)
    WAITING, REQUESTING --PeerInfo (the target, or someone first)--> PUNCHING
    PUNCHING --any valid datagram from the peer--> HANDSHAKING --keys--> CONNECTED
        (straight to CONNECTED with a peer that cannot encrypt)
    PUNCHING --nothing from the peer in FALLBACK_AFTER--> the same, relayed
        (when relay and peer offer relay1; direct probes go on, and the
        direct path takes over once it proves itself -- a Pong for a plain
        chat, a sealed frame that authenticates for an encrypted one: "now
        direct")
    PUNCHING --nothing from the peer in punch_timeout, no fallback--> IDLE
    CONNECTED --Goodbye | silence for 3 keep-alives | /leave--> IDLE
    any --/quit--> CLOSED

Everything is retried, because it is all UDP: Register with backoff until
acknowledged and then every REREGISTER_INTERVAL to keep the relay's NAT
mapping and our registration alive; Connect until PeerInfo arrives, and
again while punching so the relay repeats the introduction to a peer whose
PeerInfo was lost; probes every PUNCH_INTERVAL until the peer answers;
Goodbye in several copies. Lines typed before the chat is up, or while its
path is suspect (the peer unheard for SUSPECT_AFTER keep-alive intervals),
are queued and sent when it is up (or heard again); lines that cannot be
sent are reported, never dropped in silence. Only the relay and our partners
are listened to, and the relay only in what carries our nonce once it
has shown it (:class:`~peerpunch.registration.RelayAuth`).
"""

import collections
import enum

REGISTER_RTO = 0.5            # first Register retransmission, doubling...
REGISTER_RTO_MAX = 1.0        # ...up to this
REGISTER_TIMEOUT = 10.0       # no RegisterAck at all: give up
REREGISTER_INTERVAL = 20.0    # re-register this often, or every keep-alive interval if shorter...
REREGISTER_MIN = 1.0          # ...but not more often than this
REREGISTER_RETRY = 2.0        # after an unanswered re-registration, doubling...
RELAY_RETRY_MAX = 4.0         # ...up to this, and steady there while the relay is silent
NOT_ANSWERING_AFTER = 2       # re-registrations unanswered in a row: "the relay is not answering"
SLOW_AFTER = 2.0              # registering or punching this long: say it is still going on
WAIT_RETRY = 5.0              # waiting, with a relay that keeps no watches: Connect this often
WATCHED_WAIT_RETRY = 20.0     # waiting, with watches: Connect this often anyway (a seed-form
                              # target is never announced; a lost Online costs no more than this)
RELAY_STOPPING_RETRY = (0.5, 1.5)  # the relay said it stops: register again this soon (at random)
RELAY_STOPPING_EVERY = 60.0   # heeded at most this often (a seed or old relay's is not authenticated)
CONNECT_RETRY = 1.0
CONNECT_TIMEOUT = 10.0
NUDGE_EVERY = 0.5             # a relayed datagram while requesting: Connect again, this often at most
PUNCH_INTERVAL = 0.2
PUNCH_TIMEOUT = 10.0
FALLBACK_AFTER = 3.0          # punching this long without success: relay meanwhile
HANDSHAKE_FALLBACK_AFTER = 4.0  # a handshake this long without keys: repeat it via the relay
DIRECT_RETRY = 1.0            # while relayed, probe the direct path this often...
DIRECT_RETRY_SLOW = 5.0       # ...and this often after
DIRECT_RETRY_FAST_FOR = 30.0
KEEPALIVE = 15.0
LOST_AFTER_INTERVALS = 3
SUSPECT_AFTER = 1.25          # silent intervals before the path is suspect...
RELAY_PROBE_AFTER = 1.5       # ...and before pings also go through the relay
GOODBYE_COPIES = 3
FORMER_PEER_FOR = 5.0         # datagrams from the last peer this soon after a chat are expected
MAX_QUEUED = 256
MAX_HELD = 256                # messages kept from a peer whose key changed
MAX_HEARD = 8                 # addresses a handshake is offered to

class State(enum.Enum):
    REGISTERING = "registering"
    IDLE = "idle"
    REQUESTING = "requesting"
    WAITING = "waiting"
    PUNCHING = "punching"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"


IN_CHAT = (State.PUNCHING, State.HANDSHAKING, State.CONNECTED)

# -- events for the shell to show

Registered = collections.namedtuple("Registered", "username relay")
Connected = collections.namedtuple("Connected", "username endpoint path seconds key")
Connected.__doc__ = """The chat with *username* is up, *path* "direct" or "relayed", after
*seconds*; *key*: the fingerprint of its key if encrypted, else None."""


class Message(collections.namedtuple("Message", "partner text id")):
    """A chat line from *partner*; *id*: its number in the partner's stream
    (None for a plain DirectMessage)."""
    __slots__ = ()

    @property
    def username(self):
        """*partner*, by the name ChatMessage gave it."""
        return self.partner


Message.__new__.__defaults__ = (None,)
ChatMessage = Message         # its name before the stream: kept for callers

Delivered = collections.namedtuple("Delivered", "partner ids")
Delivered.__doc__ = """*partner*'s program has our lines *ids* (the numbers the chat gave
them, 1, 2, ... in the order typed) and shows them in order."""
NotDelivered = collections.namedtuple("NotDelivered", "partner ids reason")
NotDelivered.__doc__ = """Our lines *ids* to *partner* will not be delivered: *reason*
NO_ANSWER (not acknowledged in time) or ENDED (the chat ended first)."""
NO_ANSWER = "timeout"          # the stream's reasons (peerpunch.stream)
ENDED = "abandoned"
PeerLeft = collections.namedtuple("PeerLeft", "username")
ConnectionLost = collections.namedtuple("ConnectionLost", "username")
Closed = collections.namedtuple("Closed", "exit_code reason")
Closed.__doc__ = "The session is over: *reason* a Failed, a RelayRefused or a string."


class Words:
    """Something the user is told, as data: *what* names the words
    (:data:`peerpunch.console.WORDS`), *fields* fill them in; a field may be
    Words itself. A *what* that names no words there is shown as it is."""

    __slots__ = ("what", "fields")

    def __init__(self, what, **fields):
        self.what = what
        self.fields = fields

    def __eq__(self, other):
        return type(self) is type(other) and (self.what, self.fields) == (other.what, other.fields)

    def __hash__(self):
        return hash((type(self).__name__, self.what))

    def __repr__(self):
        fields = "".join(", %s=%r" % item for item in sorted(self.fields.items()))
        return "%s(%r%s)" % (type(self).__name__, self.what, fields)


class Notice(Words):
    """A line of information."""


class Failed(Words):
    """What the user asked for (or a chat) failed."""


class Alert(Words):
    """A warning shown loudly."""


PinKey = collections.namedtuple("PinKey", "username key")
PinKey.__doc__ = "Remember *key* as *username*'s (the shell writes known_peers)."
Registering = collections.namedtuple("Registering", "username relay")
StillRegistering = collections.namedtuple("StillRegistering", "relay seconds")
StillPunching = collections.namedtuple("StillPunching", "username seconds")
Waiting = collections.namedtuple("Waiting", "username")
Waiting.__doc__ = "*username* is not online: we wait for it and connect when it comes."
StoppedWaiting = collections.namedtuple("StoppedWaiting", "username")
RelayNotAnswering = collections.namedtuple("RelayNotAnswering", "relay seconds")
RelayNotAnswering.__doc__ = "No answer from *relay* for *seconds*; we keep asking."
RelayBack = collections.namedtuple("RelayBack", "relay")
RelayStopping = collections.namedtuple("RelayStopping", "relay")
RelayStopping.__doc__ = "*relay* said it stops (a restart, say); we register again when it is back."
RelayRefused = collections.namedtuple("RelayRefused", "code username when")
RelayRefused.__doc__ = """The relay refused with Error *code* (its text is never shown;
a code we do not know is shown only as a plain word). *when*: REFUSED_REGISTERING
(our name, *username*, is not ours: the session closes with this as its reason),
REFUSED_LATER (our name was taken while the relay could not hear us),
REFUSED_REQUEST (our request for *username*)."""
ChatRow = collections.namedtuple("ChatRow", "name kind state path encrypted key")
ChatRow.__doc__ = """One open chat or joined group as a view lists it: *kind* "chat" or
"group"; *state* the chat's state word ("punching", "handshaking",
"connected"; "pending": a chat request from someone never talked to, until
/accept or /decline; for a group, "joined"); *path* "direct", "relayed" or
None (still punching; a group); *encrypted* bool; *key* the partner's key
fingerprint once keys are agreed, else None."""
ChatList = collections.namedtuple("ChatList", "rows current")
ChatList.__doc__ = """The chats and groups (*rows*, a tuple of ChatRow) and *current*, the
name plain lines go to (a group's name for a group; None: nowhere). The
core emits it whenever either changed (at most once per call), so a
prompt (``bob (direct, encrypted)> ``) or a GUI's list follows without
asking. Line views word nothing for it."""
REFUSED_REGISTERING = "registering"
REFUSED_LATER = "later"
REFUSED_REQUEST = "request"
