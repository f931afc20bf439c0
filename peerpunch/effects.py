"""What the sans-I/O cores hand back to their I/O shells.

A core method returns a list of these; the shell carries them out in order.
Events particular to one core (chat lines, connection changes) live beside
that core.
"""

import collections

Send = collections.namedtuple("Send", "data addr")
Send.__doc__ = "Send the datagram *data* (bytes) to *addr* (a socket address)."

Log = collections.namedtuple("Log", "level text")
Log.__doc__ = "Write *text* to the log at *level* (a logging level number)."
