"""How chat requests and blocked names read on a terminal: the words of
:mod:`peerpunch.consent` and :mod:`peerpunch.answers`, for
:mod:`peerpunch.console` (which sanitizes them). Pure functions."""

WORDS = {
    "chat_request": "accept chat from {name}? /accept or /decline",
    "chat_accepted": "accepted the chat with {name}",
    "chat_declined": "declined the chat with {name}",
    "chat_request_expired": "declined the chat with {name}: no answer in {seconds:g} s",
    "request_pending": "{name} asks to chat: /accept {name} or /decline {name} first",
    "request_unshown": "{count} line(s) from {name} were not shown (the chat was not accepted)",
    "request_unshown_full": "{count} line(s) from {name} were not shown: more than {limit}"
                            " arrived before /accept",
    "blocked": "blocked {name} for the rest of this run: chats, files and group invitations"
               " from {name} are refused",
    "is_blocked": "{name} is blocked for the rest of this run",
    "already_blocked": "{name} is already blocked",
    "blocked_list": "blocked for the rest of this run: {names}",
    "blocked_none": "no one is blocked (/block NAME blocks NAME)",
    "block_self": "you cannot block yourself",
    "block_full": "already {count} names blocked, as many as you may",
    "usage_block": "usage: /block NAME ({why})",
}


def which(verb, names, ids):
    """A bare /accept or /decline with several things it could mean: how to name each."""
    chats = "/%s %s for the chat" % (verb, names[0]) if len(names) == 1 else \
        "/%s NAME for a chat (%s)" % (verb, ", ".join(names))
    if not ids:
        return "which one? %d chat requests: %s" % (len(names), chats)
    offers = "/%s ID for the file (%s)" % (verb, ids[0]) if len(ids) == 1 else \
        "/%s ID for a file (%s)" % (verb, ", ".join(ids))
    return "which one? %s, %s" % (chats, offers)
