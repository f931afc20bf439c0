"""Address keys without the socket module: the same keys ipaddress gives,
for every form a socket hands the relay."""

import ast
import ipaddress
import os
import random

import pytest

from peerpunch import addrkeys as K

RELAY_CORE = ("addrkeys", "directory", "forwarder", "pairings", "registry", "relayuser",
              "routability", "shares", "watches")


def _addresses(rng, n=500):
    out = [("%d.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(4)), rng.randrange(65536))
           for _ in range(n)]
    out += [(str(ipaddress.IPv6Address(rng.getrandbits(128))), rng.randrange(65536), 0, 0)
            for _ in range(n)]
    out += [(str(ipaddress.IPv6Address(rng.getrandbits(64) << 64 | rng.getrandbits(16))), 1, 0, 0)
            for _ in range(n)]                                   # runs of zeros: "::"
    out += [("::ffff:" + a[0], a[1], 0, 0) for a in out[:n]]
    return out + [(h, 9, 0, 0) for h in ("::", "::1", "1::", "fe80::1%eth0", "64:ff9b::1.2.3.4",
                                         "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::")]


def _expected(addr):
    ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return int(ip), int(ip), int(ip) >> 8
    return None, int(ip).to_bytes(16, "big")[:8], 1 << 48 | int(ip) >> 80


def test_addrkeys_agree_with_ipaddress_on_what_sockets_give():
    for addr in _addresses(random.Random(7)):
        ip4, host, block = _expected(addr)
        assert K.block_key(addr) == block, addr
        assert K.ip_key(addr) == host, addr
        key = K.addr_key(addr)
        if len(addr) == 2:
            assert key == 1 << 48 | ip4 << 16 | addr[1] and K.addr_of(key) == addr
        else:
            assert key is addr                       # kept as it is


@pytest.mark.parametrize("host", ["1.2.3.04", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "-1.2.3.4",
                                  "1.2.3.+4", " 1.2.3.4", "1.2.3.4 ", "1.2.3.\u0664", "1..2.3", "", "x"])
def test_addrkeys_other_text_is_kept_as_it_is(host):
    """Only the canonical dotted quad becomes an int, so the address a key
    gives back is always the very one that came in."""
    assert K.ipv4_int(host) is None and K.addr_key((host, 1)) == (host, 1)


def test_addrkeys_bad_ipv6_text_raises_value_error():
    for host in ("1::2::3", "1:2:3", "12345::", "g::1", "1:2:3:4:5:6:7:8:9"):
        with pytest.raises(ValueError):
            K.block_key((host, 1, 0, 0))


def test_relay_core_modules_use_no_socket_thread_selector_or_clock():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "peerpunch")
    for name in RELAY_CORE:
        with open(os.path.join(root, name + ".py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        assert not imported & {"socket", "threading", "selectors", "time"}, name
