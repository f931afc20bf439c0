"""Stand-ins for the original Rust proof of concept (the "seed"), for
compatibility tests: ``python tests/seed.py relay --port 0`` and
``python tests/seed.py peer --relay HOST:PORT --name NAME [--connect NAME]``.

They know only the seed's ten variants and behave as the Rust programs do
where it matters to us: they read into a 1024-byte buffer, and on any
datagram they cannot parse -- an unknown variant, a unit variant in map form,
a truncated document -- they "panic": print ``panicked: ...`` and exit 101.
Like serde, they ignore unknown fields inside known struct variants.
The relay finds users by a linear scan, as the seed does.
"""

import argparse
import json
import socket
import sys
import threading

BUF = 1024
UNIT = {"SessionFinished", "RegisterAck", "TargetNotFound", "TargetBusy", "Ping", "Pong", "Goodbye"}
STRUCT = {"Register": ["username"], "Connect": ["target_username"],
          "PeerInfo": ["peer", "username"], "DirectMessage": ["content"]}


def panic(why):
    print("panicked: %s" % why, flush=True)
    sys.stdout.flush()
    import os
    os._exit(101)


def decode(data):
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        panic("invalid JSON: %s" % exc)
    if isinstance(doc, str):
        if doc not in UNIT:
            panic("unknown variant %r" % doc)
        return doc, {}
    if isinstance(doc, dict) and len(doc) == 1:
        (name, body), = doc.items()
        if name in STRUCT and isinstance(body, dict) and \
                all(isinstance(body.get(f), str) for f in STRUCT[name]):
            return name, body
    panic("unexpected document %r" % data[:100])


def encode(name, **fields):
    doc = {name: fields} if fields else name
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def endpoint(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def fmt(addr):
    return ("[%s]:%d" if ":" in addr[0] else "%s:%d") % addr[:2]


def run_relay(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    print("seed relay listening on %s" % fmt(sock.getsockname()), flush=True)
    users = []                                 # [name, addr, busy]
    while True:
        data, addr = sock.recvfrom(BUF)
        name, body = decode(data)
        if name == "Register":
            users = [u for u in users if u[1] != addr and u[0] != body["username"]]
            users.append([body["username"], addr, False])
            sock.sendto(encode("RegisterAck"), addr)
        elif name == "Connect":
            me = next((u for u in users if u[1] == addr), None)
            target = next((u for u in users if u[0] == body["target_username"]), None)
            if me is None:
                continue
            if target is None:
                sock.sendto(encode("TargetNotFound"), addr)
            elif target[2]:
                sock.sendto(encode("TargetBusy"), addr)
            else:
                me[2] = target[2] = True
                sock.sendto(encode("PeerInfo", peer=fmt(target[1]), username=target[0]), addr)
                sock.sendto(encode("PeerInfo", peer=fmt(addr), username=me[0]), target[1])
                print("introduced %s to %s" % (me[0], target[0]), flush=True)
        elif name == "SessionFinished":
            for u in users:
                if u[1] == addr:
                    u[2] = False


def run_peer(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    relay = endpoint(args.relay)
    sock.sendto(encode("Register", username=args.name), relay)
    name, _ = decode(sock.recvfrom(BUF)[0])
    if name != "RegisterAck":
        panic("expected RegisterAck, got %s" % name)
    print("registered", flush=True)
    if args.connect:
        sock.sendto(encode("Connect", target_username=args.connect), relay)
    while True:
        data, addr = sock.recvfrom(BUF)
        name, body = decode(data)
        if name == "PeerInfo":
            break
        if name in ("TargetNotFound", "TargetBusy"):
            print(name, flush=True)
            return
    peer, peer_name = endpoint(body["peer"]), body["username"]
    sock.sendto(encode("Ping"), peer)          # the seed's single punch
    print("peer %s at %s" % (peer_name, body["peer"]), flush=True)

    def receive():
        while True:
            data, addr = sock.recvfrom(BUF)
            name, body = decode(data)
            if addr != peer:
                continue
            if name == "DirectMessage":
                print("[%s]> %s" % (peer_name, body["content"]), flush=True)
            elif name == "Ping":
                sock.sendto(encode("Pong"), peer)
            elif name == "Goodbye":
                print("[%s] has left the chat." % peer_name, flush=True)
    threading.Thread(target=receive, daemon=True).start()
    for line in sys.stdin:
        sock.sendto(encode("DirectMessage", content=line.rstrip("\n")), peer)
    sock.sendto(encode("Goodbye"), peer)
    sock.sendto(encode("SessionFinished"), relay)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    r = sub.add_parser("relay")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=0)
    p = sub.add_parser("peer")
    p.add_argument("--relay", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--connect")
    args = parser.parse_args()
    (run_relay if args.role == "relay" else run_peer)(args)


if __name__ == "__main__":
    main()
