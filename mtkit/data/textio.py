"""The one way mtkit reads a text file or stream into lines.

Lines split on "\\n" only (str.splitlines would also split on U+2028, form feeds and the like and
break the line alignment of a parallel corpus), a "\\r" before it is dropped, a leading BOM is
dropped, and the newline that ends the last line does not start another one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO, Literal

from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"


def read_lines(source: Path | str | BinaryIO, name: str | None = None,
               errors: Literal["strict", "replace"] = "strict") -> list[str]:
    """Return the lines of a UTF-8 file (a path) or byte stream, without line terminators.

    `name` is how messages call the input (default: the path, or "<stdin>" for a stream). With
    errors="strict" a byte that is not UTF-8 raises MtkitError naming the line; with "replace" it
    becomes U+FFFD and one warning lists the lines (nothing is dropped: a translation keeps one
    output line per input line).
    """
    if isinstance(source, (str, Path)):
        name = name or str(source)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise MtkitError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise MtkitError(f"{name}: is a directory, not a text file") from None
        except OSError as err:
            raise MtkitError(f"{name}: cannot read the file ({err.strerror})") from None
    else:
        name = name or "<stdin>"
        data = source.read()
    if data.startswith(BOM):
        data = data[len(BOM):]
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out, bad = [], []
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if errors == "strict":
                raise MtkitError(f"{name}, line {number}: not valid UTF-8 (byte {raw[err.start]:#04x}); convert "
                                 "the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`") from None
            text = raw.decode("utf-8", errors="replace")
            bad.append(number)
        out.append(text[:-1] if text.endswith("\r") else text)
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        log.warning("%s: invalid UTF-8 replaced with U+FFFD on %d line(s): %s", name, len(bad), shown)
    return out
