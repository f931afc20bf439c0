"""The single-file program's entry point (tools/build_pyz.py makes dist/peerpunch.pyz).

``peerpunch.pyz relay [flags]`` runs the relay, ``peerpunch.pyz peer [flags]``
the peer, ``peerpunch.pyz gui [flags]`` the peer in its window (``--gui``),
and with no command the flags go to the peer (``peerpunch.pyz --connect
bob``). Each program names itself after how it was started
(``peerpunch.pyz relay``) in its --help and errors. A word that is not
a command and not a flag is a usage error: the peer takes no such words.
"""

import os
import sys


def _peer(argv, prog):
    from .peer import main
    return main(argv, prog)


def _gui(argv, prog):
    from .peer import main
    return main(["--gui"] + argv, prog)


def _relay(argv, prog):
    from .relay import main
    return main(argv, prog)


COMMANDS = {"peer": _peer, "relay": _relay, "gui": _gui}


def main(argv=None):
    """Dispatch *argv* (default sys.argv[1:]) to a command; return its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = os.path.basename(sys.argv[0] if sys.argv else "") or "peerpunch.pyz"
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:], "%s %s" % (name, argv[0]))
    if argv and not argv[0].startswith("-"):
        sys.stderr.write("%s: error: unknown command %r (choose from %s; no command means peer)\n"
                         % (name, argv[0], ", ".join(sorted(COMMANDS))))
        return 2
    return _peer(argv, name)
