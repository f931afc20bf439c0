"""An attacker's tools on loopback (root only): send UDP with a forged source
address, and capture the UDP datagrams two local ports exchange."""

import os
import socket
import struct
import threading
import time

ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SOL_PACKET = 263
PACKET_STATISTICS = 6


def available():
    """None if raw sockets work here, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (raw sockets)"
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except (OSError, AttributeError) as exc:
        return "raw sockets unavailable: %s" % exc
    return None


class Spoofer:
    """Sends UDP datagrams that claim to come from any 127.x address and port."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, data, src, dst):
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data   # no checksum: allowed
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
        self.sock.sendto(ip + udp, (dst[0], 0))

    def close(self):
        self.sock.close()


class Capture:
    """Records UDP payloads between two loopback ports, in both directions,
    as (src_port, dst_port, payload), from a thread until stop()."""

    def __init__(self, ports):
        self.ports = set(ports)
        self.packets = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # a slow reader under CI load must not lose packets: the kernel holds
        # them (root may exceed rmem_max), and drops() says if it did not
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self._take(*self.sock.recvfrom(65535))
            except socket.timeout:
                continue

    def _take(self, frame, meta):
        if meta[2] != socket.PACKET_OUTGOING:           # loopback shows each packet twice
            self._parse(frame[14:])                    # lo has a zeroed Ethernet header

    def _parse(self, ip):
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            return
        start = (ip[0] & 0x0F) * 4
        sport, dport, length = struct.unpack("!HHH", ip[start:start + 6])
        if {sport, dport} <= self.ports:
            self.packets.append((sport, dport, bytes(ip[start + 8:start + length])))

    def stop(self):
        """Stop; return every packet sent before the call (on loopback a
        packet reaches our buffer before its send returns, in practice)."""
        self._stop.set()
        self._thread.join()
        self.sock.setblocking(False)
        try:
            while True:
                self._take(*self.sock.recvfrom(65535))
        except BlockingIOError:
            pass
        packets, self.dropped = struct.unpack(
            "II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.sock.close()
        return self.packets

    def quiet(self, src, dst, for_seconds=0.5, wait=15.0):
        """Wait until no packet from *src* to *dst* was seen for *for_seconds*
        (the tail of a handshake is over); raise if that never happens."""
        deadline = time.monotonic() + wait
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = [p for p in self.packets if p[0] == src and p[1] == dst]
            if len(now) != seen:
                seen, since = len(now), time.monotonic()
            elif time.monotonic() - since >= for_seconds:
                return
            time.sleep(0.05)
        raise AssertionError("%d kept sending to %d for %.0f s" % (src, dst, wait))
