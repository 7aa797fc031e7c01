"""A corpus of hostile and awkward image files, made here from one real photograph (no fixtures, so
the fuzzing hooks can import it too).

``corpus(photo_jpeg)`` maps a file name to ``(bytes, expected status)``: 200 for awkward but valid
images, 400 for undecodable ones, 413 for images whose declared size is over the service's pixel
limit (``LIMIT_PIXELS``: the server must run with ``max_pixels`` = it).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

LIMIT_PIXELS = 20_000_000
BOMB_SIDE = 20_000  # 400 megapixels of zeros: a ~50 KB PNG that would inflate to 400 MB (mode L)
UNDER_LIMIT_SIDE = 4_400  # 19.4 megapixels: just under LIMIT_PIXELS, so it is really decoded


def encode(img: Image.Image, fmt: str, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_zeros(side: int, bit_depth: int = 8) -> bytes:
    """A real, valid grayscale PNG of ``side`` x ``side`` black pixels, compressed row by row so
    making it never holds the inflated image in memory."""
    row = b"\x00" * (1 + (side * bit_depth + 7) // 8)  # filter byte + packed pixels
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_rgb48(img: Image.Image) -> bytes:
    """``img`` as a 16-bit-per-channel RGB PNG (Pillow cannot write one itself)."""
    rows = (np.asarray(img.convert("RGB"), dtype=">u2") * 257).reshape(img.height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", img.width, img.height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def with_png_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """``png`` with ``chunks`` inserted right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png[:33] + b"".join(chunks) + png[33:]


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the size in its first SOF0/SOF2 marker replaced (the scan data is not)."""
    data = bytearray(jpeg)
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at > 0:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise ValueError("no SOF marker found")


def jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP1 segment right after SOI (a segment holds at most 65533 bytes)."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def exif_ifd_loop(entries: int = 4000) -> bytes:
    """EXIF whose IFD0 has thousands of entries and whose Exif-IFD and next-IFD pointers point back at
    IFD0: a parser that follows pointers without a visited set never ends."""
    ifd_at = 8
    tags = [(0x0112, 3, 1, 1), (0x8769, 4, 1, ifd_at), (0x8825, 4, 1, ifd_at)]  # orientation, Exif IFD, GPS IFD
    tags += [(0x9000 + i, 4, 1, i) for i in range(entries - len(tags))]
    body = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *tag) for tag in tags)
    body += struct.pack("<I", ifd_at)  # next IFD: itself
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", ifd_at) + body


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen and single frame declare ``width`` x ``height``, with one tiny
    LZW block of pixel data."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def corpus(photo_jpeg: bytes) -> dict[str, tuple[bytes, int]]:
    photo = Image.open(io.BytesIO(photo_jpeg)).convert("RGB")
    small = photo.resize((photo.width // 3, photo.height // 3))
    png = encode(small, "PNG")
    frames = [small.rotate(angle) for angle in (0, 90, 180)]
    ztxt_bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9))  # 64 MB of text
    itxt_bomb = png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(b"<x/>" * (16 << 20), 9))
    many_text = [png_chunk(b"tEXt", b"k%d\x00" % i + b"v" * 2000) for i in range(2000)]  # 4 MB of chunks
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n"
    return {
        # not images at all, or broken
        "zero-bytes.jpg": (b"", 400),
        "header-only.jpg": (photo_jpeg[:20], 400),
        "truncated.jpg": (photo_jpeg[: len(photo_jpeg) // 3], 400),
        "truncated.png": (png[: len(png) // 2], 400),
        "png-without-iend.png": (png[:-12], 200),  # all pixel data present: Pillow decodes it
        "wrong-magic.jpg": (b"\x00" * 4 + photo_jpeg[4:], 400),
        "gif-magic-on-a-jpeg.gif": (b"GIF89a" + photo_jpeg[6:], 413),  # its "GIF" header declares 20000x20000
        "png-bytes-called.jpg": (png, 200),  # the bytes decide, not the name or the declared type
        "bad-crc.png": (png[:29] + b"\x00\x00\x00\x00" + png[33:], 400),
        "random.bin": (bytes(range(256)) * 64, 400),
        "html.jpg": (b"<html><script>alert(1)</script></html>", 400),
        "eps-postscript.jpg": (eps, 400),  # a format that would run Ghostscript: not accepted
        "icon.ico": (encode(small.resize((32, 32)), "ICO"), 400),  # outside the accepted formats
        # declared sizes over the limit: refused before any pixel is decoded
        "bomb-20000x20000.png": (png_of_zeros(BOMB_SIDE, bit_depth=1), 413),  # over Pillow's own bomb limit too
        "bomb-8000x8000.png": (png_of_zeros(8_000, bit_depth=1), 413),  # under Pillow's, over LIMIT_PIXELS
        "declares-65500x65500.jpg": (jpeg_declaring(photo_jpeg, 65_500, 65_500), 413),
        "declares-65535x65535.gif": (gif_declaring(65_535, 65_535), 413),
        "declares-0x0.gif": (gif_declaring(0, 0), 400),
        # valid, but heavy or odd
        "zeros-4400x4400.png": (png_of_zeros(UNDER_LIMIT_SIDE), 200),
        "huge-exif-ifd-loop.jpg": (jpeg_with_app1(photo_jpeg, exif_ifd_loop()), 200),
        "ztxt-bomb.png": (with_png_chunks(png, [ztxt_bomb]), 400),  # Pillow refuses text that inflates > 1 MB
        "itxt-bomb.png": (with_png_chunks(png, [itxt_bomb]), 400),
        "many-text-chunks.png": (with_png_chunks(png, many_text), 200),
        "animated.gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0), 200),
        "gray16.png": (encode(small.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"), "PNG"), 200),
        "rgb48.png": (png_rgb48(small), 200),
        "cmyk.jpg": (encode(small.convert("CMYK"), "JPEG"), 200),
        "cmyk.tiff": (encode(small.convert("CMYK"), "TIFF"), 200),
        "one-pixel.png": (encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), 200),
        "one-by-5000.png": (encode(Image.new("L", (1, 5000), 128), "PNG"), 200),
        "progressive.jpg": (encode(small, "JPEG", progressive=True), 200),
    }
