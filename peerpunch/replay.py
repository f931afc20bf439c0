"""A sliding anti-replay window over 64-bit datagram counters (RFC 6479).

Theory of operation
-------------------
The sender numbers its datagrams 0, 1, 2, ... The receiver remembers the
highest counter it has accepted and, for the WINDOW counters below it, which
ones it has seen, as a bitmap of BLOCKS words. Moving the top forward only
clears the words it passes over, so an update costs O(1) however far it
jumps (RFC 6479 section 2). A counter is accepted once: a repeat, or one that
has fallen below the window, is refused. Counters arriving out of order
within the window are all accepted.

``check`` only looks; ``update`` marks. Check before spending effort on a
datagram (decryption), update only once it has authenticated, so forged
datagrams cannot move the window.
"""

BLOCK_BITS = 64
BLOCKS = 64                      # a power of two: index with a mask
WINDOW = (BLOCKS - 1) * BLOCK_BITS   # 4032 counters of reordering tolerated


class ReplayWindow:
    def __init__(self):
        self.top = -1                          # highest counter accepted
        self._bits = [0] * BLOCKS

    def check(self, counter):
        """True if *counter* would be accepted (not seen, not too old)."""
        if counter > self.top:
            return True
        if counter < 0 or self.top - counter >= WINDOW:
            return False
        block = (counter // BLOCK_BITS) % BLOCKS
        return not self._bits[block] >> (counter % BLOCK_BITS) & 1

    def update(self, counter):
        """Mark *counter* as seen; returns False (and changes nothing) if it
        would not have been accepted. The in-order case (above the top, in
        its word) touches one word."""
        top = self.top
        if counter > top:
            if counter // BLOCK_BITS != top // BLOCK_BITS:
                self._advance(top, counter)
            self.top = counter
        elif not self.check(counter):
            return False
        self._bits[(counter // BLOCK_BITS) % BLOCKS] |= 1 << (counter % BLOCK_BITS)
        return True

    def _advance(self, top, counter):
        """Clear the words between the old *top*'s and *counter*'s."""
        current, new = top // BLOCK_BITS, counter // BLOCK_BITS
        if new - current >= BLOCKS:
            self._bits = [0] * BLOCKS
        else:
            for block in range(current + 1, new + 1):
                self._bits[block % BLOCKS] = 0
