"""Running the command line inside a test: exit code and captured output, and the one-line error check."""
from __future__ import annotations

from gaitrec.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    """``gaitrec ARGS`` in this process: (exit code, stdout, stderr) of this call alone."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *args, starts: str = "gaitrec ") -> str:
    """The single stderr line of ``gaitrec ARGS``, which must exit 2 with a line beginning ``starts``."""
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), err
    return lines[0]
