"""Names from the network keep no character that does not print (they
could hide an extension or make two names look alike), keep ordinary
spaces, and the progress line shows them made safe too."""

import pytest

from peerpunch import chatfiles as CF
from peerpunch import transfer as T
from peerpunch.console import sanitize
from peerpunch.filewords import format_news
from peerpunch.safename import is_safe_part, safe_part, safe_parts

HIDDEN = [
    ("a\u2028b.txt", "ab.txt"),          # line separator
    ("a\u2029b.txt", "ab.txt"),          # paragraph separator
    ("pay\u200bpal.pdf", "paypal.pdf"),   # zero-width space
    ("in\u00advoice.pdf", "invoice.pdf"),  # soft hyphen
    ("x\u061c.exe", "x.exe"),            # Arabic letter mark
    ("y\ufff9z.txt", "yz.txt"),          # interlinear annotation anchor
    ("t\U000e0041\U000e0042.txt", "t.txt"),   # tag characters
    ("nb\u00a0sp.txt", "nbsp.txt"),      # no-break space
    ("ok name.txt", "ok name.txt"),      # the ordinary space stays
    ("caf\u00e9 \u65e5\u672c.txt", "caf\u00e9 \u65e5\u672c.txt"),
]


@pytest.mark.parametrize("name,safe", HIDDEN)
def test_safename_characters_that_do_not_print_are_removed(name, safe):
    assert safe_part(name) == safe
    assert is_safe_part(safe) and not (name != safe and is_safe_part(name))


def test_safename_a_part_of_only_invisible_characters_is_dropped():
    assert safe_parts(["dir", "\u200b\u2028", "f"]) == ["dir", "f"]


def test_filewords_progress_line_shows_names_made_safe():
    progress = T.FileProgress("%016x" % 1, 10, 100, 5.0, 18)
    news = CF.FileNews("b\u202eob", progress, False, ("evil\u202etxt.exe",), 0)
    line = format_news(news, sanitize, tty=True)
    assert "\u202e" not in line and "from " in line
