"""The reliable stream in the NAT lab (issue 11 section 3): alice and bob
behind two home routers (``port-restricted``) chat directly; then each
router drops 30 % of UDP both ways on its WAN side (so about half of all
datagrams die on the way), alice types 100 lines at once, and bob must show
each exactly once and in order, with no line reported not delivered.
Needs root, ip, iptables, nft and conntrack."""

import re
import time

import pytest

from .natlab import require_lab, runner, topology

pytestmark = [pytest.mark.natlab, pytest.mark.timeout(120)]

LOSS = 0.3
LINES = 100
ARRIVE_WITHIN = 30.0


def test_natlab_delivery_100_lines_at_30_percent_loss_arrive_once_in_order():
    require_lab()
    with topology.Lab("port-restricted", "port-restricted") as lab, runner.Chat(lab) as chat:
        chat.start()
        path = chat.connect()[0]
        assert path == "direct", chat.transcript()
        lab.add_loss("alice", LOSS)
        lab.add_loss("bob", LOSS)
        texts = ["line %03d of %d" % (i, LINES) for i in range(1, LINES + 1)]
        started = time.monotonic()
        for text in texts:
            chat.alice.send(text)
        chat.bob.expect(r"^\[alice\]> line %03d of" % LINES, timeout=ARRIVE_WITHIN)
        seconds = time.monotonic() - started
        shown = [line[len("[alice]> "):] for line in chat.bob.lines["stdout"]
                 if line.startswith("[alice]> ")]
        assert shown == texts, chat.transcript()
        dropped = lab.dropped_by_loss("alice") + lab.dropped_by_loss("bob")
        assert dropped > 0, "the loss never hit"
        assert not chat.alice.has(r"not delivered"), chat.transcript()
        print("\nFIGURE natlab, 30 %% loss on both home routers: %d lines typed at once, all shown"
              " once and in order after %.2f s; %d datagrams dropped by the loss rules"
              % (LINES, seconds, dropped))
        assert not any(re.search(runner.LOST, line) for line in chat.alice.lines["stdout"])
