"""Names from the network made safe: a table of hostile names, unique
names in a directory, and joins that cannot leave their root."""

import os

import pytest

from peerpunch import safename as S

HOSTILE = [                     # (name from the network, the safe part made of it)
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", ".._.._etc_passwd"),
    ("..", S.FALLBACK),
    (".", S.FALLBACK),
    ("", S.FALLBACK),
    ("   ", S.FALLBACK),
    ("/etc/shadow", "_etc_shadow"),
    ("C:\\Windows\\system32", "C__Windows_system32"),
    ("C:", "C_"),
    ("a\\b", "a_b"),
    ("nul\x00byte", "nulbyte"),
    ("bell\x07\x1b[31mred", "bell[31mred"),
    ("evil\u202etxt.exe", "eviltxt.exe"),
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("Com1.tar.gz", "_Com1.tar.gz"),
    ("LPT9", "_LPT9"),
    ("com\u00b9.log", "_com\u00b9.log"),
    ("CONSOLE", "CONSOLE"),
    ("name. . .", "name"),
    ("trailing space ", "trailing space"),
    ("what?<>|*\".txt", "what______.txt"),
    ("file:stream", "file_stream"),
    (".hidden", ".hidden"),
    ("...", S.FALLBACK),
    (".x.peerpunch-part", ".x.peerpunch-part_"),
    (None, S.FALLBACK),
    (42, S.FALLBACK),
    ("caf\u00e9.txt", "caf\u00e9.txt"),
]


@pytest.mark.parametrize("hostile,safe", HOSTILE)
def test_safename_hostile_name_becomes_its_safe_part(hostile, safe):
    assert S.safe_part(hostile) == safe
    assert S.is_safe_part(safe)


@pytest.mark.parametrize("hostile,safe", HOSTILE)
def test_safename_safe_part_has_nothing_dangerous(hostile, safe):
    part = S.safe_part(hostile)
    assert part and part not in (".", "..")
    assert not set(part) & set("/\\:\x00")
    assert len(part.encode("utf-8")) <= S.MAX_NAME_BYTES
    assert S.safe_part(part) == part


def test_safename_overlong_name_is_cut_at_a_character_boundary_keeping_its_extension():
    name = "\u00e9" * 200 + ".jpeg"          # 405 bytes of UTF-8
    part = S.safe_part(name)
    assert part.endswith(".jpeg")
    assert len(part.encode("utf-8")) <= S.MAX_NAME_BYTES
    assert set(part[:-5]) == {"\u00e9"}
    assert len(S.safe_part("\U0001F600" * 100).encode("utf-8")) == 252   # 4-byte chars


@pytest.mark.parametrize("path,parts", [
    ("a/b/c.txt", ["a", "b", "c.txt"]),
    ("../../../x", ["x"]),
    ("/abs//dir/./f", ["abs", "dir", "f"]),
    ("C:\\Users\\..\\f", ["C_", "Users", "f"]),
    (["ok", "..", "a/b", "", "NUL"], ["ok", "a_b", "_NUL"]),
    ("", [S.FALLBACK]),
    ("../..", [S.FALLBACK]),
])
def test_safename_path_becomes_safe_parts(path, parts):
    assert S.safe_parts(path) == parts


def test_safename_unique_name_numbers_files_before_the_extension(tmp_path):
    assert S.unique_name(str(tmp_path), "a.txt") == "a.txt"
    (tmp_path / "a.txt").write_text("x")
    assert S.unique_name(str(tmp_path), "a.txt") == "a (1).txt"
    (tmp_path / "a (1).txt").write_text("x")
    assert S.unique_name(str(tmp_path), "a.txt") == "a (2).txt"


def test_safename_unique_name_numbers_directories_after_the_whole_name(tmp_path):
    (tmp_path / "photos.2024").mkdir()
    assert S.unique_name(str(tmp_path), "photos.2024", is_dir=True) == "photos.2024 (1)"


def test_safename_unique_name_counts_a_dangling_link_as_taken(tmp_path):
    os.symlink(str(tmp_path / "nowhere"), str(tmp_path / "x"))
    assert S.unique_name(str(tmp_path), "x") == "x (1)"


def test_safename_numbered_name_stays_within_the_limit():
    name = "a" * 250 + ".txt"
    numbered = S.numbered(name, 12)
    assert numbered.endswith(" (12).txt")
    assert len(numbered.encode("utf-8")) == S.MAX_NAME_BYTES


def test_safename_join_stays_under_the_root(tmp_path):
    root = str(tmp_path)
    assert S.safe_join(root, ["a", "b.txt"]) == os.path.join(root, "a", "b.txt")


@pytest.mark.parametrize("parts", [["..", "x"], ["a/../../x"], ["/etc"], [], ["."], ["CON"]])
def test_safename_join_refuses_unsafe_parts(tmp_path, parts):
    with pytest.raises(S.UnsafePath):
        S.safe_join(str(tmp_path), parts)


def test_safename_join_refuses_a_link_that_leads_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(tmp_path), str(root / "out"))
    with pytest.raises(S.UnsafePath):
        S.safe_join(str(root), ["out", "x"])


def test_safename_fold_joins_names_a_disk_may_merge():
    assert S.fold("Caf\u00e9") == S.fold("CAFE\u0301") == S.fold("caf\u00e9")
    assert S.fold("a") != S.fold("b")
