"""The shared reader of NDJSON files: plain or gzip (several members too), damage as typed errors, complete lines."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from collections.abc import Iterator

import pytest
from isal import igzip_lib, isal_zlib  # a dependency of arxctl: all three inflaters are always tested

from arxctl import ndjson

TEXT = b"".join(b'{"seq":%d,"note":"%s"}\n' % (i, b"x" * (i % 97)) for i in range(20_000))
PACKED = gzip.compress(TEXT)



@pytest.fixture(params=["igzip", "isal_zlib", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each inflater the reader can use: ISA-L's igzip decompressor, ISA-L through zlib's API, the stdlib's zlib."""
    name = str(request.param)
    monkeypatch.setattr(ndjson, "_igzip", igzip_lib if name == "igzip" else None)
    monkeypatch.setattr(ndjson, "_inflate", zlib if name == "zlib" else isal_zlib)
    return name


class Trickle(io.RawIOBase):
    """A pipe that hands over at most `step` bytes per read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = memoryview(data)
        self.step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.step, len(self.data))
        buffer[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def read(data: bytes, **sizes: int) -> tuple[bytes, ndjson.Chunks]:
    reader = ndjson.Chunks(io.BytesIO(data), **sizes)
    return b"".join(reader), reader


def damage(data: bytes, **sizes: int) -> tuple[bytes, ndjson.GzipDamage]:
    """What was read before the damage, and the error."""
    out = bytearray()
    with pytest.raises(ndjson.GzipDamage) as caught:
        for chunk in ndjson.Chunks(io.BytesIO(data), **sizes):
            out += chunk
    return bytes(out), caught.value


def test_a_plain_file_passes_through_in_chunks_of_the_given_size() -> None:
    reader = ndjson.Chunks(io.BytesIO(TEXT), read_size=1000, chunk_size=50_000)
    chunks = list(reader)
    assert b"".join(chunks) == TEXT
    assert [len(c) for c in chunks[:3]] == [1000, 50_000, 50_000]
    assert not reader.gzipped
    assert reader.consumed == len(TEXT)


def test_an_empty_file_has_no_chunks(inflater: str) -> None:
    reader = ndjson.Chunks(io.BytesIO(b""))
    assert list(reader) == []
    assert (reader.gzipped, reader.consumed) == (False, 0)
    assert list(ndjson.Chunks(io.BytesIO(b"\x1f"))) == [b"\x1f"]  # too short to be gzip: plain text


def test_gzip_is_inflated_whatever_the_sizes(inflater: str) -> None:
    text, reader = read(PACKED)
    assert text == TEXT
    assert reader.gzipped
    assert reader.consumed == len(PACKED)
    for read_size, chunk_size in ((1, 7), (13, 100_000), (4096, 4096), (1 << 18, 1 << 21)):
        chunks = list(ndjson.Chunks(io.BytesIO(PACKED), read_size=read_size, chunk_size=chunk_size))
        assert b"".join(chunks) == TEXT
        assert max(map(len, chunks)) <= chunk_size


def test_several_members_are_one_stream(inflater: str) -> None:
    halves = gzip.compress(TEXT[:1000]) + gzip.compress(b"") + gzip.compress(TEXT[1000:])
    assert read(halves)[0] == TEXT
    for read_size in (1, 2, 3, 64):
        assert read(halves, read_size=read_size)[0] == TEXT


@pytest.mark.parametrize("delta", [-2, -1, 0, 1])
def test_a_member_ending_next_to_a_read_boundary(inflater: str, delta: int) -> None:
    """The next member's magic bytes can straddle two reads."""
    first = gzip.compress(TEXT[:4000], 0)
    read_size = len(first) - delta
    assert read(first + PACKED, read_size=read_size)[0] == TEXT[:4000] + TEXT
    _, error = damage(first + b"x" + PACKED, read_size=read_size)
    assert (error.kind, error.offset) == ("garbage", len(first))


def test_a_pipe_that_hands_over_a_byte_at_a_time(inflater: str) -> None:
    two = PACKED + PACKED
    for step in (1, 5):
        reader = ndjson.Chunks(io.BufferedReader(Trickle(two, step), buffer_size=1), read_size=4096)
        assert b"".join(reader) == TEXT + TEXT
        assert reader.consumed == len(two)
    assert b"".join(ndjson.Chunks(Trickle(TEXT[:5000], 1))) == TEXT[:5000]
    reader = ndjson.Chunks(Trickle(two, 1))
    assert b"".join(reader) == TEXT + TEXT
    assert reader.consumed == len(two)


def test_a_truncated_stream(inflater: str) -> None:
    for cut in (10, len(PACKED) // 3, len(PACKED) - 1):
        text, error = damage(PACKED[:cut], read_size=4096)
        assert (error.kind, error.offset, error.reason) == ("truncated", cut, "")
        assert str(error) == "the compressed stream ends before its end marker"
        assert TEXT.startswith(text)
    _, error = damage(PACKED + PACKED[:100])
    assert error.kind == "truncated"
    _, error = damage(PACKED + b"\x1f\x8b")
    assert error.kind == "truncated"


def test_a_damaged_stream(inflater: str) -> None:
    damaged = bytearray(PACKED)
    damaged[len(PACKED) // 2] ^= 0xFF
    text, error = damage(bytes(damaged), read_size=4096)
    assert error.kind == "damaged"
    assert error.reason
    assert 0 <= error.offset <= len(PACKED)  # near where the inflater noticed: a wrong checksum shows at the end
    assert str(error) == f"the compressed stream is damaged near byte {error.offset}: {error.reason}"
    assert text != TEXT
    _, error = damage(PACKED[:10] + b"\x00" * 50)
    assert error.kind == "damaged"
    assert 0 <= error.offset <= 60


@pytest.mark.parametrize("tail", [b"junk", b"\x00" * 16, b"\x1f", b"\x1f\x8c" + PACKED])
def test_bytes_after_the_stream_are_garbage(inflater: str, tail: bytes) -> None:
    text, error = damage(PACKED + tail)
    assert text == TEXT  # everything before them is read
    assert (error.kind, error.offset, error.reason) == ("garbage", len(PACKED), "")
    assert str(error) == f"bytes after the compressed stream at byte {len(PACKED)}"


def test_the_inflaters_agree() -> None:
    """Property-style: random text, random member splits and sizes give the same bytes through each inflater."""
    rnd = random.Random(3)
    for _ in range(20):
        text = rnd.randbytes(rnd.randint(0, 3000)) + b"\n" * rnd.randint(0, 9) + b"a" * rnd.randint(0, 70_000)
        cut = rnd.randint(0, len(text))
        packed = gzip.compress(text[:cut], rnd.randint(0, 9)) + gzip.compress(text[cut:], rnd.randint(0, 9))
        sizes = {"read_size": rnd.randint(1, 5000), "chunk_size": rnd.randint(1, 70_000)}
        outs = []
        for igzip, inflate in ((igzip_lib, isal_zlib), (None, isal_zlib), (None, zlib)):
            if inflate is None:
                continue
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ndjson, "_igzip", igzip)
                patch.setattr(ndjson, "_inflate", inflate)
                outs.append(read(packed, **sizes)[0])
        assert outs == [text] * len(outs)


def batches(chunks: list[bytes]) -> list[tuple[list[bytes], bytes]]:
    return list(ndjson.line_batches(iter(chunks)))


def test_line_batches_cut_complete_lines() -> None:
    assert batches([]) == []
    assert batches([b""]) == []
    assert batches([b"a\nb", b"c\n\nd\n", b"e"]) == [
        ([b"a"], b"a\nb"), ([b"bc", b"", b"d"], b"c\n\nd\n"), ([b"e"], b"e"),
    ]
    assert batches([b"lo", b"ng", b" line\n"]) == [([b"long line"], b" line\n")]
    assert batches([b"x\n", b"\n"]) == [([b"x"], b"x\n"), ([b""], b"\n")]


def test_line_batches_give_every_line_once_and_the_chunk_holds_all_but_the_first_start() -> None:
    rnd = random.Random(7)
    text = b"".join(rnd.choice([b"", b"a", b"bb", b"ccc" * 40]) + b"\n" for _ in range(3000)) + b"end"

    def pieces() -> Iterator[bytes]:
        at = 0
        while at < len(text):
            step = rnd.randint(1, 300)
            yield text[at:at + step]
            at += step

    got = list(ndjson.line_batches(pieces()))
    assert [line for lines, _ in got for line in lines] == text.split(b"\n")
    for lines, chunk in got:
        parts = chunk.split(b"\n")
        assert lines
        assert parts[1:len(lines)] == lines[1:]
        assert lines[0].endswith(parts[0])
