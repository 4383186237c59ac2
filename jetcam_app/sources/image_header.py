"""What an image file's own structure says before it is decoded: its size in pixels (PNG IHDR, JPEG SOF, BMP, WebP,
TIFF headers) and whether it is complete (a JPEG's end marker, a PNG's IEND chunk). OpenCV has no header-only API,
and it decodes a cut-short JPEG without a word (libjpeg fills the rest with grey)."""

import re
import struct
from typing import NamedTuple, Optional, Tuple

# A JPEG marker: FF, then neither a stuffed 00 nor a restart marker (D0-D7, inside the entropy-coded data) nor a fill FF.
_JPEG_MARKER = re.compile(b"\xff[\x01-\xcf\xd8-\xfe]")
# Start-of-frame markers (baseline, progressive, lossless, arithmetic): C0-CF except DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageHeader(NamedTuple):
    format: str  # "jpeg", "png", "bmp", "webp", "tiff"
    size_wh: Optional[Tuple[int, int]]  # None when the header does not say
    missing_end: Optional[str]  # what a cut-short file lacks ("JPEG end marker FF D9"); None: complete or unknown


def read_header(data: bytes) -> Optional[ImageHeader]:
    """The header of a JPEG, PNG, BMP, WebP or TIFF file's bytes; None for any other format (OpenCV decides)."""
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:8] == _PNG_SIGNATURE:
        return _png(data)
    if data[:2] == b"BM" and len(data) >= 26:
        return ImageHeader("bmp", _bmp_size(data), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageHeader("webp", _webp_size(data), None)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageHeader("tiff", _tiff_size(data), None)
    return None


def _jpeg(data: bytes) -> ImageHeader:
    """Walks the segments by their lengths (an EXIF thumbnail inside APP1, with its own FF D9, is skipped whole) and
    the entropy-coded data by its markers, to the end-of-image marker: bytes after it are allowed."""
    size = None
    pos = 2
    while True:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return ImageHeader("jpeg", size, "JPEG end marker FF D9")
        marker, pos = data[found.start() + 1], found.start() + 2
        if marker == 0xD9:
            return ImageHeader("jpeg", size, None)
        if marker in (0x01, 0xD8):  # no length field
            continue
        if pos + 2 > len(data):
            return ImageHeader("jpeg", size, "JPEG end marker FF D9")
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        if marker in _JPEG_SOF and size is None and pos + 7 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            size = (width, height)
        pos += length


def _png(data: bytes) -> ImageHeader:
    size = None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR" and pos + 16 <= len(data):
            size = struct.unpack(">II", data[pos + 8:pos + 16])
        if kind == b"IEND":
            return ImageHeader("png", size, None)
        pos += 12 + length  # length, type, data, CRC
    return ImageHeader("png", size, "PNG end chunk IEND")


def _bmp_size(data: bytes) -> Optional[Tuple[int, int]]:
    header_size = struct.unpack("<I", data[14:18])[0]
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:  # lossy: a key frame's 14-bit sizes after the start code 9D 01 2A
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:  # lossless: 14 bits each of width - 1 and height - 1
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:  # extended: the canvas, 24 bits each of width - 1 and height - 1
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


def _tiff_size(data: bytes) -> Optional[Tuple[int, int]]:
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    if offset + 2 > len(data):
        return None
    count = struct.unpack(order + "H", data[offset:offset + 2])[0]
    found = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i:offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (found[256], found[257]) if len(found) == 2 else None
