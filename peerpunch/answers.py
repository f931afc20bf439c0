"""The commands that answer chat requests and block names: /accept, /decline, /block.

Theory of operation
-------------------
Entries of :data:`COMMANDS`, merged into :mod:`peerpunch.commands` over the
file commands they extend: ``/accept NAME`` and ``/decline NAME`` answer
NAME's chat request (:mod:`peerpunch.consent`); with anything else they act
on file offers as before (:mod:`peerpunch.filecommands`). A bare /accept or
/decline takes the one thing it can act on: the one chat request the user
was asked about when no file offer waits, else the offer; with a question
and an offer (or several questions) it refuses to guess and says how to
name each; so does an answer whose word is both a chat request's name and
an offer's id (a stranger may register a name that looks like one).
Commands that would talk to a partner whose request is
unanswered (/msg, /switch, /send, /sendto, /connect) say to answer first.
"""

from .events import Notice
from . import transfer as T
from .filecommands import COMMANDS as FILE_COMMANDS, _matches, offers


def _answering(verb, act):
    files = FILE_COMMANDS[verb]

    def command(session, arg, now):
        consents, name = session.consent, arg.strip()
        if name in consents.requests:
            if _matches(session, name, (T.OFFERED,)):    # a name made to look like an offer's id:
                return [Notice("which_answer", verb=verb, names=(name,), ids=offers(session))]
            return act(consents, name, now)
        asked = consents.asked()
        if name or not asked:
            return files(session, arg, now)
        ids = offers(session)
        if len(asked) == 1 and not ids:
            return act(consents, asked[0], now)
        return [Notice("which_answer", verb=verb, names=tuple(asked), ids=ids)]
    return command


def _block(session, arg, now):
    return session.consent.block(arg.strip(), now, session.groups.machine.invites)


def _unanswered(command, pick):
    """*command*, refused while the partner *pick(words)* names has a request unanswered."""
    def guarded(session, arg, now):
        words = arg.split()
        name = pick(words) if words else None
        if name is not None and session.consent.pending(name):
            return [Notice("request_pending", name=name)]
        return command(session, arg, now)
    return guarded


def guard(commands):
    """The commands that name a partner, guarded (see the module docstring)."""
    first, last = (lambda words: words[0]), (lambda words: words[-1])
    for verb, pick in (("msg", first), ("switch", first), ("sendto", first), ("send", last),
                       ("connect", first)):
        commands[verb] = _unanswered(commands[verb], pick)


COMMANDS = {
    "accept": _answering("accept", lambda consents, name, now: consents.accept(name, now)),
    "decline": _answering("decline", lambda consents, name, now: consents.decline(name, now)),
    "block": _block,
}
