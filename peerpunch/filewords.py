"""How file transfers read on the terminal (the console's part for them).

Pure functions: :func:`format_news` words a
:class:`~peerpunch.chatfiles.FileNews` (and the other file events), the
progress line included (only for a terminal: None otherwise); :data:`WORDS`
holds the Notices of the file commands, merged into the console's.
"""

from . import chatfiles as CF
from . import groupfiles as GF
from . import filedesk as FD
from . import transfer as T

FILES_HELP = """
files:
  /send PATH... [NAME]   offer files or directories to the current chat or group
                         (or NAME's, or #GROUP's members: each accepts for themselves);
                         quote paths with spaces: /send "my file.txt"
  /sendto NAME PATH...   the same, to NAME's chat (or #GROUP)
  /accept [ID|NAME]      accept an offer (/decline refuses it)
  /cancel [ID|NAME]      stop a transfer and remove its partial file
  /files                 the transfers under way"""

WORDS = {
    "usage_send": "usage: /send PATH... [NAME] or /sendto NAME PATH... (quote paths with spaces)",
    "no_chat_for_files": "not in a chat: /connect NAME first",
    "send_ambiguous": "{name} is both an open chat and a file here: /sendto {name} PATH... to"
                      " send to that chat, or ./{name} to send the file",
}

FAILED_WHY = {
    T.DECLINED_REASON: "declined",
    T.CANCELLED_REASON: "cancelled",
    T.HASH_MISMATCH: "hash mismatch (the file is not kept)",
    T.DISK_FULL: "disk full",
    T.IO_ERROR: "I/O error",
    T.PROTOCOL: "protocol error",
    T.PARTNER_GONE: "partner gone",
    T.LOST: "partner gone (no answer for %g s, or no data for %g s)" % (
        CF.DELIVERY_TIMEOUT, CF.IDLE_TIMEOUT),
    T.EXPIRED: "expired (the offer was not answered in %d min, or never arrived whole)"
               % (FD.ANSWER_TIMEOUT // 60),
    GF.NO_FILES: "cannot take files",
}

REFUSED_WHY = {
    CF.NOT_ENCRYPTED: "cannot send files to {name}: that chat is not encrypted, {name}'s client"
                      " does not take files, or it is not connected yet",
    CF.NOTHING: "nothing to send to {name}: no regular file in what you named",
    CF.UNREADABLE: "cannot send to {name}: {detail}",
    CF.BUSY: "not accepted: the same files are being received already (another offer);"
             " /accept again when that transfer ends",
    CF.TOO_MANY: "not accepted yet: too many transfers are being received; /accept again"
                 " when one ends",
    CF.BLOCKED: "no files to or from {name} while its key is not the one you trusted:"
                " /verify {name}, then /trust {name} first",
}


def size(n):
    """*n* bytes, short."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return "%.1f %s" % (n / scale, unit)
    return "%d B" % n


def _names(names, clean):
    shown = ", ".join(clean(n) for n in names[:3])
    return shown + (" and %d more" % (len(names) - 3) if len(names) > 3 else "")


def format_news(event, clean, tty=False):
    """The line for a file event (None: not shown); *clean* makes network
    text safe to show."""
    kind = type(event)
    if kind is CF.FileRefused:
        return REFUSED_WHY[event.why].format(name=clean(event.partner), detail=clean(
            event.detail or ""))
    if kind is GF.GroupSendDone:
        return _group_done(event, clean)
    if kind is CF.FileSkipped:
        return "skipped (not sent): " + "; ".join(
            "%s (%s)" % (clean(path), why) for path, why in event.skipped[:10])
    news, partner = event.event, clean(event.partner)
    names = _names(event.names, clean)
    kind = type(news)
    short = news.id[:8]
    if kind is T.FileOffered:
        return "%s offers %s (%d file%s, %s)%s [%s]: /accept %s or /decline %s" % (
            partner, names, news.count, "" if news.count == 1 else "s", size(news.total),
            " to group " + clean(event.group) if event.group else "", short, short, short)
    if kind is T.FileAccepted:
        resumed = ", resuming after %d bytes" % news.resumed if news.resumed else ""
        if event.outgoing:
            return "%s accepted %s [%s]%s" % (partner, names, short, resumed)
        return "receiving %s from %s [%s]%s" % (names, partner, short, resumed)
    if kind is T.FileProgress:
        return _progress(event, news, clean) if tty else None
    if kind is T.FileSent:
        return "sent %s to %s (%d bytes, %d sent this time)" % (names, partner, news.total,
                                                                event.sent)
    if kind is T.FileReceived:
        return "received %s (%d bytes) from %s, saved as %s" % (
            names, news.total, partner, ", ".join(clean(w) for w in news.where))
    if kind is T.FileFailed:
        why = FAILED_WHY.get(news.reason, news.reason)
        if news.remote and news.reason in (T.CANCELLED_REASON, T.DECLINED_REASON):
            why += " by " + partner
        return "transfer of %s %s %s failed: %s" % (
            names, "to" if event.outgoing else "from", partner, why)
    return None


def _group_done(event, clean):
    """The summary of a group send, once every member's transfer ended."""
    sent = ", ".join(clean(m) for m in event.sent) or "no one"
    failed = "; not to " + ", ".join("%s (%s)" % (clean(m), FAILED_WHY.get(why, why))
                                     for m, why in event.failed) if event.failed else ""
    return "group %s: %s sent to %s%s" % (clean(event.group), _names(event.names, clean),
                                          sent, failed)


def _progress(event, news, clean):
    percent = 100.0 * news.done / news.total if news.total else 100.0
    rate = "%s/s" % size(news.rate) if news.rate else "-"
    eta = " ETA %d s" % news.eta if news.eta is not None and news.done < news.total else ""
    return "%s %s %s: %3.0f%% %s of %s, %s%s" % (
        "to" if event.outgoing else "from", clean(event.partner), _names(event.names, clean),
        percent, size(news.done), size(news.total), rate, eta)


def files_table(rows, clean):
    """/files: one line per transfer."""
    if not rows:
        return "no transfers"
    return "\n".join("[%s] %s %s %s: %s, %s of %s" % (
        tid, "to" if outgoing else "from", clean(name), _names(names, clean), state,
        size(done), size(total)) for name, tid, outgoing, state, names, done, total in rows)


def which(verb, count, ids):
    if not count:
        return "nothing to %s" % verb
    return "which one? %d transfers: /%s ID (%s)" % (count, verb, ", ".join(ids))


EVENTS = (CF.FileNews, CF.FileRefused, CF.FileSkipped, GF.GroupSendDone)
