"""What the sans-I/O cores hand back to their I/O shells.

A core method returns a list of these; the shell carries them out in order.
Events particular to one core (chat lines, connection changes) live beside
that core.
"""

import collections

Send = collections.namedtuple("Send", "data addr via", defaults=(0,))
Send.__doc__ = """Send the datagram *data* (bytes) to *addr* (a socket address) from
socket *via*: 0 is the core's own socket, others are ones it opened with
OpenSocket (a Send via a socket that is not open is dropped)."""

Log = collections.namedtuple("Log", "level text kind", defaults=(None,))
Log.__doc__ = """Write *text* to the log at *level* (a logging level number). *kind*
(a name from :data:`peerpunch.loglimit.KINDS`, or None) marks a line that one
event from the network causes: the shell rate-limits the lines of each kind."""

OpenSocket = collections.namedtuple("OpenSocket", "via")
OpenSocket.__doc__ = """Open another UDP socket, bound like socket 0 but to a port of the
system's choice, and hand what it receives to the core with *via*. If it
cannot be opened, nothing is received on it and Sends via it are dropped."""

CloseSocket = collections.namedtuple("CloseSocket", "via")
CloseSocket.__doc__ = "Close the socket opened as *via* (a no-op if it is not open)."
