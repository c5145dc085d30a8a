"""The text of a tabular file, whatever its compression (gzip, or a zip of that one
file) and encoding.

The file's bytes are held once; text is decoded as it is read, so that a huge
file never exists as a decoded copy as well.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from ..recording import RecordingError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"  # a NumPy .npz archive (or an .xlsx: excel_workbook)
# An OLE2 compound file: an Excel 97-2003 .xls (or another Office document).
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")

#: How much of a file format detection and the search for the column row look at.
HEAD_BYTES = 1 << 16

# Control bytes that a text file does not contain. A few are tolerated: the
# Digatron export of the LG HG2 data set has a NUL line in its header.
_TEXT_BYTES = bytes(range(0x20, 0x100)) + b"\t\n\r\f\v"
_MAX_CONTROL_FRACTION = 0.01
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHECK_BYTES = 1 << 20
#: The most (decompressed) bytes a file may hold: a sane bound that stops a
#: gzip bomb or a stray disk image before it takes all memory.
MAX_TEXT_BYTES = 2 << 30
_READ_CHUNK = 1 << 24


@dataclass(frozen=True)
class Text:
    """A file's (decompressed) bytes and their encoding; ``complete`` is False for a head only."""

    where: str  # the file, for messages
    data: bytes
    encoding: str
    complete: bool

    def head(self) -> str:
        """The first HEAD_BYTES decoded, ending at a line end unless the file ends first."""
        part = self.data[:HEAD_BYTES]
        more = not self.complete or len(self.data) > HEAD_BYTES
        text = codecs.getincrementaldecoder(self.encoding)().decode(part, final=not more)
        if more:
            end = max(text.rfind("\n"), text.rfind("\r")) + 1
            if not end:
                raise RecordingError(
                    f"{self.where}:1: no line end in the first {HEAD_BYTES} bytes: line 1 is too long "
                    "for the column row of a table of samples (a single huge line, or not a text table?)"
                )
            text = text[:end]
        return text

    def stream(self) -> TextIO:
        """The whole text, decoded as it is read; line ends are left to the csv module."""
        return io.TextIOWrapper(io.BytesIO(self.data), encoding=self.encoding, newline="")


def is_zip(path: Path) -> bool:
    """True if the file starts like a zip archive (as a bmsfil .npz does)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    except OSError:
        return False  # reading it as text reports the problem with the file's name


def is_npz(path: Path) -> bool:
    """True if the file is a NumPy .npz archive (a bmsfil recording is one): a zip named .npz
    or holding .npy files. Another zip (a zipped CSV) is read as the file it holds (`_read_bytes`)."""
    if not is_zip(path):
        return False
    if path.suffix.lower() == ".npz":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".npy") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return True  # loading it as a recording reports what is wrong with it


def _zip_member(fh: BinaryIO, where: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    """The one file a zip archive holds (a zipped export; what an archiver adds beside it, macOS's
    __MACOSX/ folder, is not counted); an error naming them if it holds more."""
    try:
        archive = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        raise RecordingError(f"{where}: a zip archive that does not open ({exc})") from None
    files = [info for info in archive.infolist() if not info.is_dir() and not _archiver_file(info.filename)]
    if any(info.filename.endswith(".npy") for info in files):
        archive.close()
        raise RecordingError(f"{where}: a bmsfil recording (a NumPy .npz), not a table to read as text: it is "
                             "read as it is, without --format, --map or --current-sign")
    if len(files) != 1:
        archive.close()
        shown = ", ".join(info.filename for info in files[:5]) + (", ..." if len(files) > 5 else "")
        raise RecordingError(f"{where}: a zip archive of {len(files)} files ({shown or 'none'}): bmsfil reads one "
                             "recording from one file; unzip it and import the file you want")
    return archive, files[0]


def _archiver_file(name: str) -> bool:
    """A file an archiver put beside the data: macOS's __MACOSX/ and ._ resource forks, .DS_Store."""
    base = name.rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"


def _unzipped(fh: BinaryIO, where: str, limit: int | None) -> bytes:
    """The bytes of the one file a zip holds (gzip undone, if it is a .gz), up to `limit`."""
    archive, member = _zip_member(fh, where)
    with archive:
        if limit is None and member.file_size > MAX_TEXT_BYTES:
            raise RecordingError(f"{where}: {member.filename} unzips to {member.file_size} bytes, more than the "
                                 f"{MAX_TEXT_BYTES} a file may hold")
        if member.flag_bits & 0x1:
            raise RecordingError(f"{where}: {member.filename} in this zip archive is encrypted: unzip it with its "
                                 "password and import the file")
        with archive.open(member) as inner:
            data = inner.read(limit if limit is not None else MAX_TEXT_BYTES + 1)
    for magic, what in ((GZIP_MAGIC, "itself compressed (gzip)"), (ZIP_MAGIC, "itself a zip archive (a bmsfil .npz "
                                                                              "recording?)")):
        if data.startswith(magic):
            raise RecordingError(f"{where}: holds {member.filename}, {what}: unzip it and import that file")
    if limit is None and len(data) > MAX_TEXT_BYTES:
        raise RecordingError(f"{where}: unzips to more than the {MAX_TEXT_BYTES} bytes a file may hold")
    return data


def excel_workbook(path: Path) -> str | None:
    """The error for an Excel workbook (.xlsx: a zip holding ``xl/workbook.xml``; .xls: an
    OLE2 file), which bmsfil does not read; None for any other file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(OLE2_MAGIC))
        if magic.startswith(ZIP_MAGIC):
            with zipfile.ZipFile(path) as archive:
                if "xl/workbook.xml" not in archive.namelist():
                    return None
            what = "an Excel workbook (.xlsx)"
        elif magic == OLE2_MAGIC:
            what = "an Excel 97-2003 workbook (.xls; an OLE2 Office file)"
        else:
            return None
    except (OSError, zipfile.BadZipFile):
        return None  # reading it reports the problem with the file's name
    return f"{path}: {what}, not a CSV: export it as CSV (Save As, CSV) and import that"


def read_text(path: Path, where: str) -> Text:
    """The whole file: gzip or zip undone, encoding UTF-8 (or as its byte-order mark says), else latin-1."""
    return _text(_read_bytes(path, where, None), where, complete=True)


def read_head(path: Path, where: str) -> Text:
    """Only the first HEAD_BYTES of the file (decompressed), for format detection."""
    data = _read_bytes(path, where, HEAD_BYTES)
    return _text(data, where, complete=len(data) < HEAD_BYTES)


def _read_bytes(path: Path, where: str, limit: int | None) -> bytes:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(ZIP_MAGIC))
            fh.seek(0)
            if magic == ZIP_MAGIC:
                return _unzipped(fh, where, limit)
            compressed = magic.startswith(GZIP_MAGIC)
            if limit is not None:
                if compressed:
                    with gzip.GzipFile(fileobj=fh) as gz:
                        return gz.read(limit)
                return fh.read(limit)
            if not compressed:
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_TEXT_BYTES:
                    raise RecordingError(f"{where}: {size} bytes, more than the {MAX_TEXT_BYTES} a file may hold")
                return fh.read()
            chunks, total = [], 0
            with gzip.GzipFile(fileobj=fh) as gz:
                while chunk := gz.read(_READ_CHUNK):
                    total += len(chunk)
                    if total > MAX_TEXT_BYTES:
                        raise RecordingError(
                            f"{where}: decompresses to more than the {MAX_TEXT_BYTES} bytes a file may hold"
                        )
                    chunks.append(chunk)
            return b"".join(chunks)
    except FileNotFoundError:
        raise RecordingError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise RecordingError(f"{where}: is a directory, not a file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise RecordingError(f"{where}: gzip data is truncated or corrupt ({exc})") from None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:  # damaged, a compression zipfile lacks
        raise RecordingError(f"{where}: the file in this zip archive does not unzip ({exc})") from None
    except OSError as exc:
        raise RecordingError(f"{where}: cannot read the file ({exc})") from None


def _text(data: bytes, where: str, complete: bool) -> Text:
    if not data or data.isspace():
        raise RecordingError(f"{where}: the file is empty")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            if not data[len(bom) :].strip(b"\0 \t\r\n"):
                raise RecordingError(f"{where}: the file is empty (only a byte-order mark)")
            if not _decodes(data, encoding, complete):
                odd = " (an odd number of bytes: truncated?)" if encoding == "utf-16" and len(data) % 2 else ""
                raise RecordingError(
                    f"{where}: starts with a {encoding} byte-order mark but is not {encoding}{odd}"
                )
            return Text(where, data, encoding, complete)
    sample = data[:HEAD_BYTES]
    control = len(sample.translate(None, delete=_TEXT_BYTES))
    if control > max(2, _MAX_CONTROL_FRACTION * len(sample)):
        if _utf16_without_bom(sample):
            raise RecordingError(
                f"{where}: looks like UTF-16 text without a byte-order mark (every other byte is 0); "
                "save it as UTF-8 (or UTF-16 with a byte-order mark)"
            )
        raise RecordingError(
            f"{where}: not a text CSV ({control} control bytes in its first {len(sample)} "
            "bytes: a binary file?)"
        )
    # Every byte sequence is latin-1, the encoding of the cycler exports seen so far.
    return Text(where, data, "utf-8" if _decodes(data, "utf-8", complete) else "latin-1", complete)


def _utf16_without_bom(sample: bytes) -> bool:
    """True if the NUL bytes of ``sample`` fall on one parity: ASCII text as UTF-16 LE or BE."""
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    return half >= 4 and max(even, odd) > 0.4 * half and min(even, odd) < 0.05 * half


def _decodes(data: bytes, encoding: str, complete: bool) -> bool:
    """True if ``data`` is valid in ``encoding``, checked a slice at a time to spare memory."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for start in range(0, len(data), _CHECK_BYTES):
            decoder.decode(data[start : start + _CHECK_BYTES])
        decoder.decode(b"", final=complete)
    except UnicodeDecodeError:
        return False
    return True
