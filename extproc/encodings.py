"""Content codings the processor can read through: a body compressed with
gzip or deflate is inspected decoded, bounded so that a small compressed
body cannot expand without limit. Anything else cannot be inspected, and
a capability that must read the body refuses it rather than pass it unread."""

from __future__ import annotations

import zlib

READABLE = frozenset({"gzip", "x-gzip", "deflate"})


class DecodedTooLarge(ValueError):
    """The decoded body outgrew the inspection limit."""


class StreamDecoder:
    """Decodes one body chunk by chunk; raises ValueError on corrupt data or
    once more than ``max_bytes`` came out."""

    __slots__ = ("_inflate", "_left")

    def __init__(self, max_bytes: int):
        # wbits 47 = 32 + 15: a gzip or a zlib header, whichever is there.
        self._inflate = zlib.decompressobj(wbits=47)
        self._left = max_bytes

    def feed(self, chunk: bytes, end: bool = False) -> bytes:
        try:
            out = self._inflate.decompress(chunk, self._left + 1)
            if end:
                out += self._inflate.flush()
        except zlib.error as exc:
            raise ValueError(f"corrupt compressed body: {exc}") from None
        self._left -= len(out)
        if self._left < 0 or self._inflate.unconsumed_tail:
            raise DecodedTooLarge("decoded body over the inspection limit")
        return out


def decoder_for(encoding: str, max_bytes: int) -> StreamDecoder | None:
    """A decoder for ``encoding`` (as ``extproc.headers.content_encoding``
    gives it, non-empty), or None when the processor cannot read it."""
    return StreamDecoder(max_bytes) if encoding in READABLE else None
