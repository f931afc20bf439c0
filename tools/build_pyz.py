#!/usr/bin/env python3
"""Build dist/peerpunch.pyz: the peer and the relay in one file that any Python 3.8+ runs.

    python3 tools/build_pyz.py [-o PATH]

The archive holds every ``peerpunch/**/*.py`` of this checkout (no bytecode)
and a ``__main__.py`` that hands the command line to peerpunch._pyz_main:
``python3 peerpunch.pyz relay|peer|gui [flags]``. zipfile writes the entries,
sorted, all stamped with one fixed time and mode, so the same sources give
the same bytes; zipapp puts the ``#!/usr/bin/env python3`` line in front.
Standard library only.
"""

import argparse
import io
import os
import sys
import zipapp
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TARGET = os.path.join(ROOT, "dist", "peerpunch.pyz")
INTERPRETER = "/usr/bin/env python3"
STAMP = (1980, 1, 1, 0, 0, 0)           # the earliest time a zip entry can hold
MAIN = b"""# peerpunch.pyz [peer|relay|gui] [flags]; built by tools/build_pyz.py
import sys
from peerpunch._pyz_main import main
sys.exit(main())
"""


def sources(root=ROOT):
    """Archive names of the package's .py files, sorted."""
    names = []
    for folder, dirs, files in os.walk(os.path.join(root, "peerpunch")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        names += [rel + "/" + f for f in files if f.endswith(".py")]
    return sorted(names)


def archive_bytes(root=ROOT):
    """The zip (without the #! line) as bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entries = [("__main__.py", MAIN)]
        entries += [(name, _read(os.path.join(root, name))) for name in sources(root)]
        for name, data in entries:
            info = zipfile.ZipInfo(name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3                      # Unix, so the mode below counts
            info.external_attr = 0o100644 << 16       # a regular file, rw-r--r--
            archive.writestr(info, data)
    return buffer.getvalue()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def build(target=DEFAULT_TARGET, root=ROOT):
    """Write the executable archive to *target* (replaced whole, never half-written)."""
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    partial = target + ".partial"
    try:
        zipapp.create_archive(io.BytesIO(archive_bytes(root)), partial, interpreter=INTERPRETER)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, message))


def main(argv=None):
    parser = _Parser(prog="build_pyz.py", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", metavar="PATH", default=DEFAULT_TARGET,
                        help="where to write the archive (default dist/peerpunch.pyz)")
    args = parser.parse_args(argv)
    try:
        build(args.output)
    except OSError as exc:
        sys.stderr.write("build_pyz.py: cannot write %s: %s\n" % (args.output, exc.strerror or exc))
        return 1
    print("wrote %s (%d bytes, %d modules)" % (args.output, os.path.getsize(args.output),
                                                len(sources())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
