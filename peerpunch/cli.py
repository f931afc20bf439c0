"""Command-line helpers shared by the relay and the peer."""

import argparse
import os
import socket
import sys

from . import __version__


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument costs one line on stderr and exit code 2."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


def program_name(fallback):
    """How this program was started, for its usage lines: ``python PATH`` for a
    .py file (bin/peer.py), else the file's name (a console script such as
    ``peerpunch-peer``); *fallback* when ``sys.argv[0]`` says nothing (``-c``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(".py"):
        return "python " + argv0
    name = os.path.basename(argv0)
    if name.lower().endswith(".exe"):
        name = name[:-4]
    return fallback if name in ("", "-c", "-m") else name


def host_port(text, default_port=None):
    """Parse ``HOST:PORT``, ``[IPV6]:PORT`` or (with *default_port*) ``HOST``.

    For use as an argparse ``type=``: raises ArgumentTypeError with a reason.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError("%r: expected [IPV6]:PORT" % text)
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif ":" in text:
        raise argparse.ArgumentTypeError("%r: write IPv6 addresses as [ADDR]:PORT" % text)
    else:
        host, port = text, None
    if port is None:
        if default_port is None:
            raise argparse.ArgumentTypeError("%r: expected HOST:PORT" % text)
        port = str(default_port)
    return host_name(host), port_number(port)


def host_name(text):
    if not text or len(text) > 253 or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError("%r is not a host name or address" % text)
    return text


def port_number(text, allow_zero=True):
    if not text.isdigit() or not text.isascii() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("%r is not a port number (0-65535)" % text)
    return int(text)


def resolve(host, port, family=socket.AF_UNSPEC):
    """The first UDP socket address for (*host*, *port*): (family, sockaddr).

    Raises OSError (socket.gaierror) with the resolver's reason.
    """
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    fam, _, _, _, sockaddr = infos[0]
    return fam, sockaddr


def usage_error(prog, message):
    """Print one line and return exit code 2 (for errors found after parsing)."""
    sys.stderr.write("%s: error: %s\n" % (prog, message))
    return 2


def version_action(parser):
    parser.add_argument("--version", action="version", version="peerpunch %s" % __version__)
