"""What a drop file that is not UTF-8 is told: the line and field of the first bad byte, and the encoding the file
looks saved in.

Drop files must be UTF-8 (a UTF-8 byte-order mark is fine). DuckDB finds a bad byte in the rows while it streams the
file, `read_header` finds one in the header; only then are the bytes looked at here, to say where and what.
"""

from __future__ import annotations

import codecs
import csv
import unicodedata
from dataclasses import dataclass

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


@dataclass(frozen=True)
class NonUtf8:
    line: int  # 1-based line of the first bad byte (1 = the header)
    field: int | None  # index of the field holding it, when the line parses as CSV
    text: str | None  # that field read as latin-1, to show
    problem: str


def likely_encoding(data: bytes) -> str:
    """The encoding a file that is not UTF-8 most likely has (a guess from its bytes, for the message)."""
    if data.startswith(_UTF32_BOMS):  # before UTF-16: the UTF-32 LE mark starts with UTF-16 LE's
        return "UTF-32"
    if data.startswith(_UTF16_BOMS) or b"\x00" in data[:4096]:
        return "UTF-16"
    # bytes 0x80-0x9f are control characters in latin-1 but letters and signs (€, ’, “) in Windows-1252
    if any(0x80 <= byte <= 0x9F for byte in data):
        return "Windows-1252"
    return "latin-1 (ISO-8859-1)"


def _bad_field(line: bytes) -> tuple[int, str] | None:
    """The first field of a CSV line that is not UTF-8: its index and its text read as latin-1."""
    fields = next(csv.reader([line.decode("latin-1").rstrip("\r\n")]), [])
    for index, field in enumerate(fields):
        try:
            field.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return index, field
    return None


def find_non_utf8(data: bytes) -> NonUtf8 | None:
    """Where `data` (a file's bytes, or its first line) stops being UTF-8; None if it is UTF-8."""
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        bad = error.start
    line = data.count(b"\n", 0, bad) + 1
    encoding = likely_encoding(data)
    if encoding.startswith("UTF-"):
        return NonUtf8(line, None, None, f"is not UTF-8: it looks saved as {encoding}; save it as UTF-8")
    end = data.find(b"\n", bad)
    field = _bad_field(data[data.rfind(b"\n", 0, bad) + 1 : None if end < 0 else end])
    char = bytes([data[bad]]).decode("cp1252" if encoding == "Windows-1252" else "latin-1", "replace")
    shown = repr(char) if char.isprintable() and not char.isspace() else unicodedata.name(char, "a control character")
    problem = f"is not UTF-8: byte 0x{data[bad]:02x} is {shown} in {encoding}, the encoding the file looks saved in"
    return NonUtf8(line, *(field or (None, None)), f"{problem}; save it as UTF-8")
