"""Image dimensions from file headers, and a structural check of PNGs, without decoding pixels.

Why: a kiosk must refuse a decompression bomb (a few kB that decode to gigabytes) *before* the
decoder allocates, and must answer a truncated or corrupt PNG with its own one-line error rather
than libpng's message on stderr. OpenCV has no header-only API, so the common formats are read
here: PNG, JPEG, WebP, BMP, TIFF and PNM (PGM/PPM). Anything else gets ``None`` and is left to
OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS, 2**30 pixels by default).
"""

from __future__ import annotations

import re
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNM = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from the header of an encoded image, or ``None`` if the format is not one read here."""
    head = bytes(data[:64])
    try:
        if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp_size(head)
        if head[:2] == b"BM":
            return _bmp_size(head)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF (43)
            return _tiff_size(data)
        if match := _PNM.match(head):
            return int(match[1]), int(match[2])
    except (struct.error, IndexError):
        return None  # a header too short to hold its size: the decoder will refuse the file
    return None


def _jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header: not a JPEG we can size
            return None
        (length,) = struct.unpack(">H", bytes(data[pos + 2 : pos + 4]))
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", bytes(data[pos + 5 : pos + 9]))
            return width, height
        pos += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _bmp_size(head: bytes) -> tuple[int, int]:
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # negative height: a top-down bitmap


def _tiff_size(data: bytes | memoryview) -> tuple[int, int] | None:
    order = "<" if bytes(data[:2]) == b"II" else ">"
    big = data[2 if order == "<" else 3] == 43  # BigTIFF: 8-byte offsets and counts, 20-byte entries
    offset, count_format, entry, rest = (8, "Q", 20, "HHQ8s") if big else (4, "H", 12, "HHI4s")
    (ifd,) = struct.unpack(order + ("Q" if big else "I"), bytes(data[offset : offset + (8 if big else 4)]))
    width = struct.calcsize(count_format)
    (count,) = struct.unpack(order + count_format, bytes(data[ifd : ifd + width]))
    found: dict[int, int] = {}
    for i in range(min(count, 4096)):
        at = ifd + width + entry * i
        tag, kind, _, value = struct.unpack(order + rest, bytes(data[at : at + entry]))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or (BigTIFF) LONG8
            size = {3: "H", 16: "Q"}.get(kind, "I")
            found[tag] = struct.unpack(order + size, value[: struct.calcsize(size)])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def png_problem(data: bytes | memoryview) -> str | None:
    """Why a PNG is truncated or corrupt (chunk walk, CRC of critical chunks, IEND present), or ``None``.

    libpng reports these on stderr from C; checking first gives one clear error instead. Ancillary
    chunks with a bad CRC are tolerated, as libpng itself skips them.
    """
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack(">I4s", bytes(data[pos : pos + 8]))
        name = kind.decode("latin-1")
        if pos + 12 + length > end:
            return f"truncated in its {name} chunk"
        critical = kind[:1].isupper()
        if critical:
            (crc,) = struct.unpack(">I", bytes(data[pos + 8 + length : pos + 12 + length]))
            if zlib.crc32(data[pos + 4 : pos + 8 + length]) != crc:
                return f"CRC mismatch in its {name} chunk"
        if kind == b"IEND":
            return None
        pos += 12 + length
    return "truncated (no IEND chunk)"
