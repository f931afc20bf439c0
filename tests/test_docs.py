"""The README a newcomer reads to the end (issue 9): short, every link in it
and in docs/ leads somewhere that exists, and the LICENSE matches setup.cfg."""

import configparser
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_LIMIT = 12 * 1024        # bytes: what a newcomer reads in ten minutes
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pages():
    return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _slug(heading):
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)      # no headings in code blocks
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_readme_stays_short():
    assert os.path.getsize(README) <= README_LIMIT


def test_every_local_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in _pages():
        with open(page, encoding="utf-8") as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue                                   # http:, mailto:
            path, _, anchor = target.partition("#")
            where = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(where):
                broken.append((os.path.relpath(page, ROOT), target, "no such file"))
            elif anchor and where.endswith(".md") and anchor not in _anchors(where):
                broken.append((os.path.relpath(page, ROOT), target, "no such heading"))
    assert broken == []


def test_the_license_file_is_the_one_setup_cfg_names():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert config["metadata"]["license"] == "MIT"
    assert config["metadata"]["license_files"].strip() == "LICENSE"
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
