"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

EMPTY_ROOT = sha256(b"").digest()
CACHE_LEVEL = 8
"""Complete subtrees of 2**CACHE_LEVEL leaves and larger are stored, so proofs never rescan the log."""

SubtreeHash = Callable[[int, int], bytes]
"""MTH(D[start:end]) for a range that the RFC 6962 recursion produces."""


_LEAF = sha256(b"\x00")
_NODE = sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one record line."""
    h = _LEAF.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): an interior node."""
    h = _NODE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, by the RFC 6962 recursion (used for small ranges and as the reference)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class CompactRange:
    """The right frontier of a growing tree: O(log n) hashes give the root at any size."""

    __slots__ = ("on_complete", "size", "stack")

    def __init__(
        self, size: int = 0, stack: list[bytes] | None = None,
        on_complete: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        self.size = size
        self.stack = stack if stack is not None else []
        self.on_complete = on_complete
        if len(self.stack) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes, not {len(self.stack)}")

    def append(self, leaf: bytes) -> None:
        index = self.size
        level = 0
        n = index
        stack = self.stack
        while n & 1:
            leaf = node_hash(stack.pop(), leaf)
            n >>= 1
            level += 1
            if level >= CACHE_LEVEL and self.on_complete is not None:
                self.on_complete(level, index >> level, leaf)
        stack.append(leaf)
        self.size = index + 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        stack = self.stack
        root = stack[-1]
        for h in reversed(stack[:-1]):
            root = node_hash(h, root)
        return root

    def to_bytes(self) -> bytes:
        return b"".join(self.stack)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        return cls(size, [data[i:i + 32] for i in range(0, len(data), 32)])


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 2.1.3.1), bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index - start < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(old, D[new]) (RFC 9162 2.1.4.1), bottom-up; empty when old is 0 or equals new."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    path: list[bytes] = []
    start, end, m, whole = 0, new, old, True
    while m != end - start:
        k = split_point(end - start)
        if m <= k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        path.append(subtree(start, end))
    path.reverse()
    return path


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Check an inclusion proof (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Check that the tree of size `new` extends the tree of size `old` (RFC 9162 2.1.4.2)."""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def range_hash(start: int, end: int, complete: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]) for a range of the RFC recursion, from complete aligned subtrees (level, index)."""
    n = end - start
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return complete(level, start >> level)
    k = split_point(n)
    return node_hash(range_hash(start, start + k, complete), range_hash(start + k, end, complete))
