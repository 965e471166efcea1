"""NDJSON files, plain or gzip (one or more members), as decompressed chunks and as the complete lines in them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal, Protocol

try:
    from isal import igzip_lib as _igzip
    from isal import isal_zlib as _inflate
except ImportError:  # no wheel for this platform: the standard library's zlib, a third as fast
    import zlib as _inflate

    _igzip = None  # type: ignore[assignment]

GZIP_MAGIC = b"\x1f\x8b"
READ_SIZE = 1 << 18
"""Compressed bytes read at a time, into one reused buffer."""
CHUNK_SIZE = 1 << 21
"""Most decompressed bytes in one chunk; plain files are read this much at a time."""

DamageKind = Literal["truncated", "damaged", "garbage"]


class Readable(Protocol):
    """A binary file, pipe or buffer opened for reading."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray, /) -> int | None: ...


class GzipDamage(Exception):
    """The gzip stream cannot be read to its end: `kind` says what happened, `offset` near which byte of the file."""

    def __init__(self, kind: DamageKind, offset: int, reason: str = "") -> None:
        super().__init__(kind, offset, reason)
        self.kind: DamageKind = kind
        self.offset = offset
        self.reason = reason
        """The inflater's own words for a damaged stream ("" for the other kinds)."""

    def __str__(self) -> str:
        if self.kind == "truncated":
            return "the compressed stream ends before its end marker"
        if self.kind == "garbage":
            return f"bytes after the compressed stream at byte {self.offset}"
        return f"the compressed stream is damaged near byte {self.offset}: {self.reason}"


class Chunks:
    """The content of a file in chunks of bytes, inflated when it starts with the gzip magic bytes.

    Iterate once; damage raises `GzipDamage` after the chunks before it. `consumed` counts the bytes read so far.
    """

    def __init__(self, handle: Readable, *, read_size: int = READ_SIZE, chunk_size: int = CHUNK_SIZE) -> None:
        self.handle = handle
        self.read_size = read_size
        self.chunk_size = chunk_size
        self.consumed = 0
        self.gzipped = False

    def __iter__(self) -> Iterator[bytes]:
        first = self._read(self.read_size)
        while 0 < len(first) < 2 and (more := self._read(self.read_size)):
            first += more
        self.gzipped = first[:2] == GZIP_MAGIC
        if not self.gzipped:
            return self._plain(first)
        if _igzip is not None:
            return self._igzip_chunks(first)
        return self._zlib_chunks(first)

    def _read(self, size: int) -> bytes:
        data = self.handle.read(size)
        self.consumed += len(data)
        return data

    def _plain(self, first: bytes) -> Iterator[bytes]:
        if first:
            yield first
        while data := self._read(self.chunk_size):
            yield data

    def _fill(self, buffer: bytearray) -> int:
        """Read into `buffer`; how many bytes came (0 at the end of the file)."""
        got = self.handle.readinto(buffer) or 0
        self.consumed += got
        return got

    def _member_start(self, data: bytes | memoryview, buffer: bytearray) -> bytes | memoryview:
        """The start of the next member: `data`, topped up to hold the magic bytes; raises on anything else."""
        if len(data) < 2:
            data = bytes(data)  # a copy before the buffer it may be a view of is filled again
            while len(data) < 2 and (got := self._fill(buffer)):
                data += buffer[:got]
        if data[:2] != GZIP_MAGIC:
            raise GzipDamage("garbage", self.consumed - len(data))
        return data

    def _igzip_chunks(self, first: bytes) -> Iterator[bytes]:
        """Inflate with ISA-L's decompressor, which releases the GIL (other threads run meanwhile)."""
        assert _igzip is not None
        buffer = bytearray(self.read_size)  # one buffer for every read: fresh ones cost a page fault per 4 KiB
        view = memoryview(buffer)
        inflater = _igzip.IgzipDecompressor(flag=_igzip.DECOMP_GZIP)
        data: bytes | memoryview = first
        while True:
            try:
                out = inflater.decompress(data, self.chunk_size)
            except _igzip.error as exc:
                raise GzipDamage("damaged", self.consumed, str(exc)) from None
            if out:
                yield out
            data = b""
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    got = self._fill(buffer)
                    if not got:
                        return
                    data = view[:got]
                data = self._member_start(data, buffer)
                inflater = _igzip.IgzipDecompressor(flag=_igzip.DECOMP_GZIP)
            elif inflater.needs_input:
                got = self._fill(buffer)
                if not got:
                    raise GzipDamage("truncated", self.consumed)
                data = view[:got]

    def _zlib_chunks(self, first: bytes) -> Iterator[bytes]:
        """Inflate with zlib's API (python-isal's when installed, else the standard library's)."""
        buffer = bytearray(self.read_size)
        view = memoryview(buffer)
        inflater = _inflate.decompressobj(31)
        new_member = False
        offset = 0
        data: bytes | memoryview = first
        while True:
            while data:
                if new_member:
                    data = self._member_start(data, buffer)
                    inflater = _inflate.decompressobj(31)
                    new_member = False
                try:
                    out = inflater.decompress(data, self.chunk_size)
                except _inflate.error as exc:
                    raise GzipDamage("damaged", offset, str(exc)) from None
                if out:
                    yield out
                rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                offset += len(data) - len(rest)
                data = rest
                new_member = inflater.eof
            got = self._fill(buffer)
            if not got:
                break
            data = view[:got]
        if not new_member:
            raise GzipDamage("truncated", self.consumed)


def line_batches(chunks: Iterable[bytes]) -> Iterator[tuple[list[bytes], bytes]]:
    """The complete lines of chunked text, one list for each chunk that ends a line, beside that chunk.

    Lines come without their newline; a last line without one comes last, alone. The chunk holds every line of
    its list but the start of the first one (checks that are cheaper on a whole chunk can run on it).
    """
    tail = b""
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if tail:
            lines[0] = tail + lines[0]
        tail = lines.pop()
        if lines:
            yield lines, chunk
    if tail:
        yield [tail], tail
