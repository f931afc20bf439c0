"""The chat client: ``python bin/peer.py`` or ``python -m peerpunch.peer``.

The command line: flags, prompts for what they leave out, ``--nat-check``,
then one :class:`peerpunch.session.PeerSession` run by the threads of
:mod:`peerpunch.peershell` until it closes.
"""

import os
import socket
import sys
import time

from . import cli, crypto, natcheck
from . import identity as ID
from . import protocol as P
from . import session as S
from .console import HELP
from .diskwriter import usable_cpus, writer_for
from .filedisk import Disk, check_dir
from .jsonview import JsonView
from .peershell import lan_candidates, open_socket, run, run_check, socket_families
from .termshell import open_terminal


# -------------------------------------------------------------- the command


def parse_args(argv, prog="peerpunch-peer"):
    parser = cli.ArgumentParser(prog=prog, description="peerpunch chat peer", epilog=_epilog(prog),
                                formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", default=("127.0.0.1", 8080), type=cli.host_port,
                        metavar="HOST:PORT", help="the relay (default 127.0.0.1:8080)")
    parser.add_argument("--name", type=_username, help="your username (asked if missing)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--connect", type=_username, metavar="NAME", help="chat with NAME")
    who.add_argument("--wait", action="store_true", help="wait for someone to connect")
    parser.add_argument("--bind", type=cli.host_port, metavar="HOST:PORT",
                        help="local address (default 0.0.0.0:0, or [::]:0 for an IPv6 relay)")
    parser.add_argument("--keepalive", type=_seconds, default=S.KEEPALIVE, metavar="SECONDS",
                        help="ping interval; the peer is lost after 3 silent ones (default %(default)g)")
    parser.add_argument("--punch-timeout", type=_seconds, default=S.PUNCH_TIMEOUT, metavar="SECONDS",
                        help="give up punching after this long (default %(default)g)")
    parser.add_argument("--max-chats", type=_chats, default=S.WANT_CHATS, metavar="N",
                        help="chats at once, 1-%d (default %%(default)d; the relay may grant fewer)"
                        % S.WANT_CHATS)
    parser.add_argument("--identity", metavar="FILE",
                        help="your key (default %s; created if missing)"
                        % os.path.join("~/.config/peerpunch", "identity"))
    parser.add_argument("--known-peers", metavar="FILE",
                        help="pinned keys of peers (default beside the default identity)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse peers whose key is not pinned yet")
    parser.add_argument("--require-encryption", action="store_true",
                        help="refuse peers that cannot encrypt")
    parser.add_argument("--crypto-backend", choices=("auto",) + crypto.BACKEND_NAMES, default="auto",
                        help="libcrypto (fast, through ctypes), python (pure), or auto (default)")
    parser.add_argument("--nat-check", action="store_true",
                        help="ask the relay (STUN) what our NAT does, print it and exit")
    parser.add_argument("--download-dir", type=_directory, metavar="DIR",
                        help="where accepted files go (default ~/Downloads/peerpunch, created"
                        " on the first accept)")
    parser.add_argument("--auto-accept", type=_directory, metavar="DIR",
                        help="accept every file offered, into DIR")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line on stdout for every event (docs/json.md);"
                        " never asks anything, so --name is needed")
    # the terminal view (peerpunch.termview): only when stdin and stdout are a terminal
    parser.add_argument("--timestamps", action="store_true",
                        help="an HH:MM time before each message (on a terminal)")
    parser.add_argument("--bell", action="store_true",
                        help="ring the terminal's bell when messages come (once per burst)")
    parser.add_argument("--gui", action="store_true",
                        help="chat in a window (tkinter) instead of the terminal; --connect"
                        " optional, the username asked in a dialog if missing")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every ignored datagram")
    parser.add_argument("--version", action=_Version, nargs=0, help="show versions and exit")
    return parser, parser.parse_args(argv)


def _epilog(prog):
    return ("in-chat " + HELP + "\n\n"
            "examples:\n"
            "  a relay, on a server with UDP ports 8080 and 8081 open:\n"
            "    %s --port 8080\n"
            "  bob waits for a chat, alice connects to him (each on their own machine):\n"
            "    %s --relay relay.example.org:8080 --name bob --wait\n"
            "    %s --relay relay.example.org:8080 --name alice --connect bob\n"
            % (_relay_command(prog), prog, prog))


_RELAY_OF = (("peer.py", "relay.py"), ("peerpunch-peer", "peerpunch-relay"), (" peer", " relay"),
             (".pyz", ".pyz relay"), ("peerpunch-gui", "peerpunch-relay"), (".pyz gui", ".pyz relay"), ("-m peerpunch.peer", "-m peerpunch.relay"),
             ("-m peerpunch", "-m peerpunch.relay"))


def _relay_command(prog):
    """The relay, started the way this peer was (bin/peer.py: bin/relay.py)."""
    for mine, relays in _RELAY_OF:
        if prog.endswith(mine):
            return prog[:-len(mine)] + relays
    return "python -m peerpunch.relay"


class _Version(cli.argparse.Action):
    """--version: ours, and which crypto backend would be used."""

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        lines = ["peerpunch %s" % __version__]
        wanted = getattr(namespace, "crypto_backend", "auto")
        for name, backend in crypto.available_backends().items():
            state = backend.detail if isinstance(backend, crypto.Backend) else "unavailable: " + backend
            lines.append("crypto backend %s: %s" % (name, state))
        try:
            lines.append("in use: %s" % crypto.get_backend(wanted).name)
        except (RuntimeError, ValueError) as exc:
            lines.append("in use: none (%s)" % exc)
        sys.stdout.write("\n".join(lines) + "\n")
        parser.exit(0)


def _directory(text):
    try:
        return check_dir(text)
    except ValueError as exc:
        raise cli.argparse.ArgumentTypeError(str(exc)) from None


def _username(text):
    try:
        return P.check_person(text)
    except ValueError as exc:
        raise cli.argparse.ArgumentTypeError("%r: %s" % (text, exc))


def _chats(text):
    if not text.isdigit() or not 1 <= int(text) <= S.WANT_CHATS:
        raise cli.argparse.ArgumentTypeError("%r is not a whole number from 1 to %d"
                                             % (text, S.WANT_CHATS))
    return int(text)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.01 <= value <= 86400:
        raise cli.argparse.ArgumentTypeError("%r is not a number of seconds (0.01-86400)" % text)
    return value


def nat_check(args, prog):
    """``--nat-check``: run :class:`peerpunch.natcheck.NatCheck` over a socket
    bound like the chat's; print its report; return the exit code."""
    if args.connect or args.wait:
        return cli.usage_error(prog, "--nat-check cannot be combined with --connect or --wait")
    try:
        sock, relay_sockaddr = open_socket(args.relay, args.bind)
    except socket.gaierror as exc:
        return cli.usage_error(prog, "cannot resolve %s: %s" % (args.relay[0], exc.strerror))
    except OSError as exc:
        return cli.usage_error(prog, "cannot bind %s: %s" % (
            "%s:%d" % args.bind if args.bind else "a UDP socket", exc.strerror or exc))
    with sock:
        check = natcheck.NatCheck(relay_sockaddr)
        run_check(check, sock)
        local = lan_candidates(sock, relay_sockaddr)
        local_port = sock.getsockname()[1]
    if check.obs.error:
        print("nat-check: %s" % check.obs.error, file=sys.stderr, flush=True)
        return 1
    for line in natcheck.report(check.obs, local, local_port):
        print(line, flush=True)
    return 0


def ask(prompt, validate):
    """Prompt on stdout until *validate* accepts the answer; None at EOF."""
    while True:
        try:
            answer = input(prompt + " ").strip()
        except EOFError:
            return None
        try:
            return validate(answer)
        except (ValueError, cli.argparse.ArgumentTypeError) as exc:
            print(exc, flush=True)


def main(argv=None, prog=None):
    """Run the peer with *argv* (default sys.argv[1:]); *prog* is the name its
    --help and errors show (default: how sys.argv[0] was started)."""
    parser, args = parse_args(argv, prog or cli.program_name("peerpunch-peer"))
    if args.json:
        problem = _json_conflict(args)
        if problem:
            return cli.usage_error(parser.prog, problem)
    if args.nat_check:
        return nat_check(args, parser.prog)
    root = None
    if args.gui:                  # first: without tkinter or a display, nothing else is done
        from . import guiapp
        root = guiapp.open_root(parser.prog)
        if root is None:
            return 2
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        _tolerant(stream)
    try:
        sock, relay_sockaddr = open_socket(args.relay, args.bind)
    except socket.gaierror as exc:
        return cli.usage_error(parser.prog, "cannot resolve %s: %s" % (args.relay[0], exc.strerror))
    except OSError as exc:
        return cli.usage_error(parser.prog, "cannot bind %s: %s"
                               % ("%s:%d" % args.bind if args.bind else "a UDP socket",
                                  exc.strerror or exc))
    if root is not None:
        name = args.name or guiapp.ask_name(root)
    else:
        name = args.name or ask("Please enter your username:", P.check_person)
    target = args.connect
    if (args.json or root is not None) and target is None:
        target = ""          # --json never asks, and the window is useful idle: no one asked for
    if name is not None and target is None and not args.wait:
        target = ask("Enter the username of the peer you want to connect to (empty to wait):",
                     lambda text: P.check_person(text) if text else "")
    if name is None or target is None and not args.wait:
        sock.close()
        print("no username given; bye", file=sys.stderr)
        return 1
    try:
        backend = crypto.get_backend(args.crypto_backend)
        folder = ID.config_dir()
        identity = ID.load_or_create(args.identity or os.path.join(folder, "identity"),
                                     backend, crypto.generate_private_key)
        known = ID.KnownPeers(args.known_peers or os.path.join(folder, "known_peers"))
    except (RuntimeError, ID.IdentityError) as exc:
        sock.close()
        print("error: %s" % exc, file=sys.stderr)
        return 1
    relay_addr = P.canonical_addr(relay_sockaddr)
    session = S.PeerSession(name, relay_addr, target=target or None,
                            local=lan_candidates(sock, relay_sockaddr),
                            families=socket_families(sock),
                            keepalive=args.keepalive, punch_timeout=args.punch_timeout,
                            identity=identity, backend=backend, known_keys=known.keys,
                            strict=args.strict, require_encryption=args.require_encryption,
                            max_chats=args.max_chats, auto_join=args.wait,
                            ask_strangers=not args.wait,    # --wait accepts any chat
                            disk=Disk(args.download_dir, args.auto_accept, now=time.time(),
                                     writer=writer_for(usable_cpus())))
    if args.json:
        return _run_json(session, sock, args, relay_addr, identity, backend.name, known)
    print("bound to %s; relay %s" % (P.format_endpoint(sock.getsockname()),
                                     P.format_endpoint(relay_addr)), flush=True)
    print("your key %s (crypto: %s)" % (identity.fingerprint, backend.name), flush=True)
    if root is not None:
        return guiapp.run(root, session, sock, name, verbose=args.verbose, known_peers=known)
    terminal = open_terminal(folder, timestamps=args.timestamps, bell=args.bell)
    try:
        return run(session, sock, verbose=args.verbose, known_peers=known, view=terminal,
                   reader=terminal.read_input if terminal else None)
    finally:
        if terminal is not None:
            terminal.finish()


def _run_json(session, sock, args, relay_addr, identity, crypto_name, known):
    """--json: the session under a JsonView, its first line ``start``."""
    view = JsonView(sys.stdout, sys.stderr, time.time, time.monotonic)
    view.emit("start", username=args.name, bound=P.format_endpoint(sock.getsockname()),
              relay=P.format_endpoint(relay_addr), key=identity.fingerprint,
              crypto=crypto_name)
    return run(session, sock, verbose=args.verbose, known_peers=known, view=view)


def _json_conflict(args):
    """Why --json cannot run with the other arguments given (None: it can)."""
    if getattr(args, "gui", False):
        return "--json cannot be combined with --gui"
    if args.nat_check:
        return "--json cannot be combined with --nat-check"
    if args.name is None:
        return "--json needs --name (it never asks)"
    return None


def gui_main(argv=None):
    """``peerpunch-gui [flags]``: the peer in its window (``--gui``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return main(["--gui"] + argv, cli.program_name("peerpunch-gui"))


def _tolerant(stream):
    """Never die on an unencodable character or undecodable byte."""
    try:
        stream.reconfigure(errors="backslashreplace" if stream is not sys.stdin else "replace")
    except (AttributeError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main(prog="python -m peerpunch.peer"))
