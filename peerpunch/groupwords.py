"""How group chat reads on a terminal: the words of :mod:`peerpunch.groups`'s
events, for :mod:`peerpunch.console` (which sanitizes them). Pure functions."""

WHY = {
    "seed": "its client is a seed peer (no extensions): it cannot be in a group",
    "plain": "the chat is not encrypted: unencrypted chats cannot be in a group",
    "no_groups": "its client does not do groups",
    "blocked": "its key changed: /trust or /leave first",
    "pending": "it asks to chat: /accept it first",
    "no_chat": "no chat with it is up",
}
GONE_WHY = {
    "ended": "the chat with them ended",
    "no_answer": "group lines were not delivered to them",
    "lost_by": "{by} lost them",           # a member may say only that it lost one
}

WORDS = {
    "usage_invite": "usage: /invite NAME",
    "group_no_chat": "/invite needs a current chat or group (/switch NAME)",
    "group_none": "no such group (or none current): /switch GROUP",
    "group_cannot": "cannot make a group with {name}: {why}",
    "group_too_many": "already in {count} groups, as many as you may",
    "group_already_member": "{name} is already in {group}",
    "group_full": "{group} has {count} members, as many as a group may",
    "group_started": "group {group}: you and {name}; plain lines now go to {group}",
    "group_started_by": "{name} made group {group} of your chat{where}",
    "group_inviting": "group {group}: invited {name}",
    "group_invited_you": "{name} invites you into group {group} (with {names}){auto}",
    "group_you_joined": "joined group {group} with {names}{where}",
    "group_no_invite": "no invitation to join {group}",
    "group_added": "group {group}: {name} invited {member}",
    "group_joined": "group {group}: {name} joined",
    "group_left": "group {group}: {name} left",
    "group_gone": "group {group}: {said}{name} is gone ({why})",
    "group_empty": "group {group}: no one else is left in it; forgot it",
    "group_you_left": "left group {group}",
    "group_alone": "group {group}: no one else has joined yet; not sent",
    "group_refused": "group {group}: refused {count} message(s) from {name}: not announced"
                     " as a member",
    "group_invite_expired": "the invitation from {name} into {group} expired",
    "group_unreached": "group {group}: could not reach {name}; not invited",
    "group_not_sent": "{count} group message(s) to {name} not sent: no chat came up",
    "group_not_joined": "group {group}: {name} did not join",
}


def line(event, sanitize):
    """A GroupMessage: the group's name, then the sender's line as in a chat."""
    return "[%s] [%s]> %s" % (sanitize(event.group), sanitize(event.sender),
                              sanitize(event.text))


def words(event):
    """The words of a group Notice (not yet sanitized)."""
    fields = dict(event.fields)
    if event.what == "group_members":
        return _members(**fields)
    if event.what == "group_cannot":
        fields["why"] = WHY.get(fields["why"], fields["why"])
    elif event.what == "group_gone":
        fields["said"] = "%s says " % fields["by"] if fields["why"] == "lost_by" else ""
        fields["why"] = GONE_WHY.get(fields["why"], "").format(**fields)
    elif event.what in ("group_started_by", "group_you_joined"):
        fields["where"] = ("; plain lines now go to %s" % fields["group"]
                           + (" (/switch %s for the chat alone)" % fields["name"]
                              if "name" in fields else "")) if fields.pop("current") else \
            " (/switch %s to talk to the group)" % fields["group"]
    elif event.what == "group_invited_you":
        fields["auto"] = "; joining" if fields["auto"] else ": /join %s" % fields["group"]
    template = WORDS.get(event.what)
    return event.what if template is None else template.format(**fields)


def _members(group, rows):
    """/members: one line per member, with path and round-trip time."""
    return "\n".join(["group %s:" % group] + ["  %s: %s%s%s" % (
        name, state, ", %s" % path if path else "",
        ", rtt %.0f ms" % (rtt * 1000) if rtt is not None else "")
        for name, state, path, rtt in rows])
