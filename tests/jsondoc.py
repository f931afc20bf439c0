"""The --json schema as docs/json.md documents it, read from its table, and
a validator of output objects against it (so the doc and the code cannot
drift apart: a kind or field the doc does not list fails a test)."""

import json
import os
import re

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "json.md")
COMMON = ("v", "time", "event")
_ROW = re.compile(r"^\| `([a-z_]+)` \| ((?:`[a-z_]+` ?)+)\|")

# the JSON types of fields whose name says what they are
TYPES = {
    "partner": (str,), "username": (str,), "text": (str, type(None)), "what": (str,),
    "fields": (dict,), "ids": (list,), "code": (int, str), "names": (list,), "outgoing": (bool,),
    "encrypted": (bool,), "remote": (bool,), "done": (int,), "total": (int,), "group": (str, type(None)),
    "relay": (str,), "rows": (list,), "seconds": (int, float),
}


def schema(path=DOC):
    """{event kind: its fields, in the doc's order} from the doc's table."""
    kinds = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _ROW.match(line)
            if m:
                kinds[m.group(1)] = tuple(re.findall(r"`([a-z_]+)`", m.group(2)))
    return kinds


SCHEMA = schema()


def validate(obj):
    """Raise AssertionError unless *obj* (parsed JSON) is a documented object."""
    assert isinstance(obj, dict), obj
    assert obj.get("v") == 1 and isinstance(obj.get("time"), float), obj
    kind = obj.get("event")
    assert kind in SCHEMA, "undocumented kind %r" % (kind,)
    assert sorted(obj) == sorted(COMMON + SCHEMA[kind]), \
        "%s: fields %s, documented %s" % (kind, sorted(obj), sorted(COMMON + SCHEMA[kind]))
    for name, types in TYPES.items():
        if name in obj:
            assert isinstance(obj[name], types), "%s.%s is %r" % (kind, name, obj[name])
    return obj


def parse_line(line):
    """One line of --json output: parsed and validated."""
    assert line == line.strip() and line.isascii(), line
    return validate(json.loads(line))
