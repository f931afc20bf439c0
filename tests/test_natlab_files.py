"""File transfer in the NAT lab (issue 12): a 20 MB file through two home
routers with 10 % loss on both WANs, and a transfer over a relayed session
(two symmetric NATs) within the relay's default quota (256 KiB/s per
session). Needs root, ip, iptables, nft and conntrack."""

import os
import time

import pytest

from .natlab import require_lab, runner, topology

pytestmark = [pytest.mark.natlab, pytest.mark.timeout(180)]

LOSS = 0.10
LOSSY_SIZE = 20 * 1000 * 1000
LOSSY_WITHIN = 90.0                  # measured ~50 s; room for a loaded machine
RELAYED_SIZE = 2 * 1000 * 1000
RELAY_RATE = 256 * 1024              # forwarder.RATE: the relay's default bytes/s per session


def _send(tmp_path, size, profile_a, profile_b, within, loss=0.0):
    """Alice sends *size* random bytes to bob (auto-accepting); returns
    (path, seconds from accepted to in place, datagrams dropped by loss)."""
    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(size))
    down = tmp_path / "down"
    with topology.Lab(profile_a, profile_b) as lab, runner.Chat(lab) as chat:
        chat.options += ["--auto-accept", str(down)]
        chat.start()
        path = chat.connect()[0]
        if loss:
            lab.add_loss("alice", loss)
            lab.add_loss("bob", loss)
        chat.alice.send("/send %s" % source)
        chat.bob.expect(r"^receiving payload\.bin from alice", timeout=30)
        started = time.monotonic()
        chat.alice.send("a line during the transfer")
        chat.bob.expect(r"^received payload\.bin \(%d bytes\)" % size, timeout=within)
        seconds = time.monotonic() - started
        chat.alice.expect(r"^sent payload\.bin to bob", timeout=10)
        assert (down / "payload.bin").read_bytes() == source.read_bytes()
        lines = chat.bob.lines["stdout"]
        said = lines.index("[alice]> a line during the transfer")
        done = [i for i, line in enumerate(lines) if line.startswith("received payload.bin")][0]
        assert said < done, chat.transcript()
        dropped = (lab.dropped_by_loss("alice") + lab.dropped_by_loss("bob")) if loss else 0
        return path, seconds, dropped


def test_natlab_files_20_mb_through_two_home_routers_at_10_percent_loss(tmp_path):
    require_lab()
    path, seconds, dropped = _send(tmp_path, LOSSY_SIZE, "port-restricted", "port-restricted",
                                   LOSSY_WITHIN, loss=LOSS)
    assert path == "direct"
    assert dropped > 0, "the loss never hit"
    print("\nFIGURE natlab home x home, 10 %% loss on both WANs: 20 MB in %.1f s (%.2f MB/s),"
          " %d datagrams dropped by the loss rules"
          % (seconds, LOSSY_SIZE / 1e6 / seconds, dropped))


def test_natlab_files_relayed_session_stays_within_the_quota(tmp_path):
    require_lab()
    path, seconds, _ = _send(tmp_path, RELAYED_SIZE, "symmetric", "symmetric", 60.0)
    assert path == "relayed"
    rate = RELAYED_SIZE / seconds
    assert rate < RELAY_RATE, rate
    print("\nFIGURE natlab symmetric x symmetric (relayed): 2 MB in %.1f s (%.0f kB/s; the"
          " relay's default quota 262 kB/s)" % (seconds, rate / 1e3))
