"""Many UDP datagrams per system call, where Linux offers it (the shell's helper).

Theory of operation
-------------------
A bulk transfer sends and receives tens of thousands of datagrams a second,
and a system call each is a good part of what that costs in Python. Linux
(4.18 and 5.0 on) has UDP segmentation offload both ways:

* **GSO** (``UDP_SEGMENT``, option 103 at level ``SOL_UDP``): one
  ``sendmsg`` carries several datagrams for one address, concatenated, and a
  control message gives their size; the kernel (or the network card) cuts
  them apart, the last may be shorter. :func:`run_length` finds such runs
  in what a core returns (consecutive Sends on one socket to one address,
  all of one size but the last), at most MAX_SEGMENTS datagrams and
  MAX_RUN_BYTES.
* **GRO** (``UDP_GRO``, option 104): once enabled on a socket
  (:func:`enable_gro`), the kernel may hand ``recvmsg`` several datagrams
  from one sender glued together, and a control message their size;
  :func:`receive` cuts them apart again. Without that message the buffer is
  one datagram.

The peer's sockets also set DF without local fragmentation
(:func:`dont_fragment`, ``IP_PMTUDISC_PROBE``): a datagram the path cannot
carry whole is lost rather than fragmented, which is what the files
stream's path MTU search (:mod:`peerpunch.pmtu`) relies on.

The constants are numbers here: not every Python's ``socket`` module names
them. Each side falls back by itself, and for good: ``enable_gro`` returns
False where the option is refused (not Linux, an old kernel), and a send
whose segmentation the system refuses (:func:`refused`: EIO when the device
cannot checksum, EINVAL, ENOPROTOOPT, EOPNOTSUPP) makes the shell send that
run, and everything after it on that socket, one datagram per call.
"""

import errno
import struct
import sys

from .effects import Send

SOL_UDP = 17
IPPROTO_IP, IP_MTU_DISCOVER = 0, 10
IPPROTO_IPV6, IPV6_MTU_DISCOVER = 41, 23
PMTUDISC_PROBE = 3              # DF set, the path MTU the kernel learnt ignored: no fragments
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_SEGMENTS = 64               # the kernel's UDP_MAX_SEGMENTS
MAX_RUN_BYTES = 65000           # below the 65,507-byte UDP payload limit of one send
GRO_CMSG_SPACE = 64             # room for the control message (an int)
REFUSED = frozenset(getattr(errno, name) for name in ("EIO", "EINVAL", "ENOPROTOOPT",
                                                     "EOPNOTSUPP", "ENOTSUP")
                    if hasattr(errno, name))
_SEGMENT = struct.Struct("=H")  # UDP_SEGMENT's value: a u16
_GRO = struct.Struct("=i")      # UDP_GRO's control message: an int


def linux():
    return sys.platform.startswith("linux")


def prepare(sock):
    """A socket of the peer's loop: datagrams never fragmented (below),
    and GRO asked for; True if the system took GRO."""
    dont_fragment(sock)
    return enable_gro(sock)


def dont_fragment(sock):
    """Linux: set DF on every datagram and never fragment one here
    (IP_PMTUDISC_PROBE), so that a path MTU probe (:mod:`peerpunch.pmtu`)
    too big for the path is lost, not carried in fragments. False where refused."""
    if not linux():
        return False
    done = False
    for level, option in ((IPPROTO_IP, IP_MTU_DISCOVER), (IPPROTO_IPV6, IPV6_MTU_DISCOVER)):
        try:
            sock.setsockopt(level, option, PMTUDISC_PROBE)
            done = True
        except (OSError, AttributeError, TypeError):
            continue
    return done


def enable_gro(sock):
    """Ask for GRO on *sock*; True if the system took it."""
    if not linux() or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except (OSError, AttributeError, TypeError):
        return False
    return True


def receive(sock, size):
    """One ``recvmsg`` on a GRO socket: (the datagrams in it, the sender's
    address). Raises what ``recvmsg`` raises."""
    data, ancillary, _, addr = sock.recvmsg(size, GRO_CMSG_SPACE)
    segment = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO.size:
            segment = _GRO.unpack_from(value)[0]
    if segment <= 0 or len(data) <= segment:
        return [data], addr
    return [data[i:i + segment] for i in range(0, len(data), segment)], addr


def send(sock, datagrams, addr):
    """Send *datagrams* (a run, see :func:`run_length`) to *addr* in one
    ``sendmsg``; raises OSError (see :func:`refused`)."""
    size = len(datagrams[0])
    sock.sendmsg([b"".join(datagrams)], [(SOL_UDP, UDP_SEGMENT, _SEGMENT.pack(size))], 0, addr)


def refused(exc):
    """True if *exc*, from :func:`send`, says the system will not segment."""
    return getattr(exc, "errno", None) in REFUSED


def run_length(effects, start):
    """How many of the Send effects from *start* form one run (1 at least):
    on one socket to one address, all of one size but a shorter last."""
    first = effects[start]
    size, end = len(first.data), min(len(effects), start + MAX_SEGMENTS)
    count, total = 1, size
    for effect in effects[start + 1:end]:
        if type(effect) is not Send or effect.via != first.via or effect.addr != first.addr:
            break
        length = len(effect.data)
        if length > size or total + length > MAX_RUN_BYTES:
            break
        count += 1
        total += length
        if length < size:
            break                        # a shorter one ends the run
    return count
