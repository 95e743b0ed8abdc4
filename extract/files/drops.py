"""The drop location: a local folder or an `s3://` URL, listed through fsspec (s3fs for S3).

S3 credentials and endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_ENDPOINT_URL` for an S3-compatible server), read by botocore; they never pass through this code.
"""

from __future__ import annotations

import csv
import hashlib
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import fsspec
from fsspec.implementations.local import LocalFileSystem

from extract.files.encoding import find_non_utf8
from extract.files.integrity import InvalidDropFile, Problem

DROP_SUFFIX = ".csv"


@dataclass(frozen=True)
class DropFile:
    """One dropped file. `name` is its partition key; `url` is what DuckDB reads (a local path or `s3://...`)."""

    name: str
    url: str
    size: int
    modified: str  # mtime (local) or LastModified (S3), as text
    etag: str | None = None  # S3's content hash from the listing; None for local files

    @property
    def version(self) -> str:
        """A cheap token that changes whenever the file is rewritten, even back to an earlier content (no read)."""
        return f"etag:{self.etag}:{self.modified}" if self.etag else f"stat:{self.size}:{self.modified}"

    def fingerprint(self) -> str:
        """The content's identity: the ETag on S3, else an md5 of the bytes (reads the file)."""
        if self.etag:
            return f"etag:{self.etag}"
        with fsspec.open(self.url, "rb") as file:
            return f"md5:{hashlib.file_digest(file, 'md5').hexdigest()}"


def drop_filesystem(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a drop location and the location's path inside it."""
    fs, root = fsspec.core.url_to_fs(location)
    return fs, root.rstrip("/")


def list_drops(location: str) -> list[DropFile]:
    """The `*.csv` files directly in the location, by name (a name is its drop date, so oldest first)."""
    fs, root = drop_filesystem(location)
    fs.invalidate_cache(root)  # s3fs caches listings; a sensor must see new files
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"share-price drop location {location} does not exist (set ELT_FILES_DROP_DIR to a folder or s3:// URL)"
        ) from None
    if isinstance(fs, LocalFileSystem) and not fs.isdir(root):
        raise NotADirectoryError(f"share-price drop location {location} is a file, not a folder")
    drops, local = [], isinstance(fs, LocalFileSystem)
    for entry in entries:
        name = posixpath.basename(entry["name"])
        if entry["type"] != "file" or not name.endswith(DROP_SUFFIX):
            continue
        drops.append(
            DropFile(
                name=name,
                url=entry["name"] if local else fs.unstrip_protocol(entry["name"]),
                size=int(entry["size"]),
                modified=str(entry.get("mtime") or entry.get("LastModified") or ""),
                etag=None if local else (entry.get("ETag") or "").strip('"') or None,
            )
        )
    return sorted(drops, key=lambda drop: drop.name)


def read_bytes(drop: DropFile) -> bytes:
    with fsspec.open(drop.url, "rb") as file:
        return file.read()


def read_header(drop: DropFile) -> list[str]:
    """The column names in the file's first line (read on its own, so a ragged file cannot fool DuckDB's sniffer).
    A header that is not UTF-8 raises InvalidDropFile naming the encoding the file looks saved in."""
    with fsspec.open(drop.url, "rb") as file:
        line = file.readline()
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        found = find_non_utf8(line)
        problem = Problem(None, None, found.text, f"in the header {found.problem}")
        raise InvalidDropFile(drop.name, 0, [problem]) from None
    return next(csv.reader([text]), [])


# the reader's DuckDB buffer pool: one file at a time is read (CSV -> parquet), so it never needs more; past it
# DuckDB spills to the reader's temp folder (by default an in-memory DuckDB takes 80% of RAM and spills to ./.tmp)
READER_MEMORY_LIMIT = "512MB"


def reader_connection(location: str, spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads from the location (remote files through the same fsspec filesystem), bounded
    to READER_MEMORY_LIMIT and spilling to `spill_dir` (default: the system temp folder)."""
    spill = spill_dir or Path(tempfile.gettempdir()) / "elt_reader_spill"
    con = duckdb.connect(config={"memory_limit": READER_MEMORY_LIMIT, "temp_directory": str(spill)})
    con.execute("set TimeZone = 'UTC'")
    fs, _ = drop_filesystem(location)
    if not isinstance(fs, LocalFileSystem):
        con.register_filesystem(fs)
    return con
