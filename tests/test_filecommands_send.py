"""/send PATH... NAME: a last word that names an open chat AND an existing
path is refused as ambiguous, with the two ways to say which."""

from peerpunch import filecommands as FC
from peerpunch.console import format_event


class Files:
    def __init__(self):
        self.offered = []

    def offer(self, paths):
        self.offered.append(tuple(paths))
        return []


class Chat:
    def __init__(self):
        self.files = Files()


class NoGroups:
    def named(self, name):
        return None

    def current_group(self):
        return None


class Session:
    def __init__(self, *names):
        self.chats = {name: Chat() for name in names}
        self.table = type("Table", (), {"current": names[0]})()
        self.groups = NoGroups()


def test_filecommands_send_last_word_both_chat_and_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.pdf").write_bytes(b"b")
    session = Session("alice", "b.pdf")
    [notice] = FC.COMMANDS["send"](session, "a.txt b.pdf", 0.0)
    assert session.chats["b.pdf"].files.offered == session.chats["alice"].files.offered == []
    line = format_event(notice)
    assert "/sendto b.pdf PATH" in line and "./b.pdf" in line


def test_filecommands_send_last_word_a_chat_only_sends_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"a")
    session = Session("alice", "bob")
    assert FC.COMMANDS["send"](session, "a.txt bob", 0.0) == []
    assert session.chats["bob"].files.offered == [("a.txt",)]


def test_filecommands_send_dot_slash_sends_the_file_to_the_current_chat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.pdf").write_bytes(b"b")
    session = Session("alice", "b.pdf")
    assert FC.COMMANDS["send"](session, "a.txt ./b.pdf", 0.0) == []
    assert session.chats["alice"].files.offered == [("a.txt", "./b.pdf")]
