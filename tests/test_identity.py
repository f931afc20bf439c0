"""Identity and known_peers files: creation, permissions, bad contents."""

import os
import stat

import pytest

from peerpunch import crypto
from peerpunch import identity as ID

from .procs import chatting, peer

BACKEND = crypto.get_backend("auto")


def load(path):
    return ID.load_or_create(str(path), BACKEND, crypto.generate_private_key)


def test_identity_created_once_with_mode_600(tmp_path):
    path = tmp_path / "sub" / "identity"
    first = load(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = load(path)
    assert (again.private, again.public) == (first.private, first.public)
    assert first.public == BACKEND.x25519_public(first.private)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_identity_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "identity"
    load(path)
    os.chmod(path, 0o644)
    with pytest.raises(ID.IdentityError, match=r"may be read by others \(mode 644\): run chmod 600"):
        load(path)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"peerpunch-identity-v1\n", b"peerpunch-identity-v1\nAAAA\n",
                                     b"peerpunch-identity-v1\n" + b"!" * 44 + b"\n", b"\xff" * 100])
def test_identity_bad_contents_are_refused_clearly(tmp_path, content):
    path = tmp_path / "identity"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(ID.IdentityError, match="identity .* (is not a peerpunch identity file|holds no valid key)"):
        load(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_identity_unreadable_is_refused(tmp_path):
    path = tmp_path / "identity"
    load(path)
    os.chmod(path, 0)
    with pytest.raises(ID.IdentityError, match="cannot read identity"):
        load(path)


def test_identity_directory_instead_of_file(tmp_path):
    with pytest.raises(ID.IdentityError, match="cannot read identity"):
        load(tmp_path)


def test_fingerprint_and_safety_code_shapes():
    a, b = bytes(32), bytes([1]) * 32
    assert len(ID.fingerprint(a)) == 19 and ID.fingerprint(a) != ID.fingerprint(b)
    assert ID.safety_code(a, b) == ID.safety_code(b, a)
    assert [len(g) for g in ID.safety_code(a, b).split()] == [5] * 6


def test_known_peers_pin_check_and_survive_garbage(tmp_path):
    path = tmp_path / "known_peers"
    known = ID.KnownPeers(str(path))
    assert known.check("bob", bytes(32)) == ID.NEW
    known.pin("bob", bytes(32))
    path.write_text(path.read_text() + "garbage line\n\tAAAA\nbad\x01name\t%s\n" % ID.encode_key(bytes(32)))
    again = ID.KnownPeers(str(path))
    assert again.check("bob", bytes(32)) == ID.KNOWN
    assert again.check("bob", bytes([1]) * 32) == ID.CHANGED
    assert again.bad_lines == 3 and list(again.keys) == ["bob"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_peer_refuses_world_readable_identity_in_one_line(procs, relay, tmp_path):
    path = tmp_path / "identity"
    load(path)
    os.chmod(path, 0o644)
    proc = peer(procs, relay, "--name", "alice", "--wait", "--identity", str(path))
    assert proc.wait() == 1
    proc.expect(r"^error: identity .* may be read by others", stream="stderr")
    assert len(proc.lines["stderr"]) == 1


@pytest.mark.skipif(not isinstance(crypto.available_backends()["libcrypto"], crypto.Backend)
                    and os.environ.get("CI") != "true", reason="libcrypto backend unavailable")
def test_mixed_backends_chat_identically(procs, relay):
    """The backend is invisible on the wire: libcrypto talks to pure Python."""
    alice, bob = chatting(procs, relay, a_args=("--crypto-backend", "python"),
                          b_args=("--crypto-backend", "libcrypto"))
    alice.expect(r"crypto: python")
    bob.expect(r"crypto: libcrypto")
    alice.send("from the pure side")
    bob.expect(r"^\[alice\]> from the pure side$")
    bob.send("from libcrypto")
    alice.expect(r"^\[bob\]> from libcrypto$")


def test_known_peers_two_processes_pinning_keep_both(tmp_path):
    path = str(tmp_path / "known_peers")
    first, second = ID.KnownPeers(path), ID.KnownPeers(path)      # both loaded an empty file
    first.pin("bob", bytes(32))
    second.pin("carol", bytes([2]) * 32)
    assert set(ID.KnownPeers(path).keys) == {"bob", "carol"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_identity_and_known_peers_refuse_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ID.IdentityError, match="not a regular file"):
        load(fifo)
    with pytest.raises(ID.IdentityError, match="not a regular file"):
        ID.KnownPeers(str(fifo))
