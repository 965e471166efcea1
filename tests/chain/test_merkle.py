"""RFC 6962 hashing and proofs: published vectors, and every (m, n) up to 64 against a naive recomputation."""

from __future__ import annotations

import pytest

from arxctl.chain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

ENTRIES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def naive(leaves: list[bytes]):
    return lambda start, end: root_of(leaves[start:end])


def test_reference_roots_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for n in range(9):
        assert root_of(LEAVES[:n]).hex() == ROOTS[n]
        frontier = CompactRange()
        for leaf in LEAVES[:n]:
            frontier.append(leaf)
        assert frontier.root().hex() == ROOTS[n]


@pytest.mark.parametrize(("index", "size", "path"), [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
])
def test_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(index, size, naive(LEAVES))
    assert [h.hex() for h in proof] == path
    assert verify_inclusion(index, size, LEAVES[index], proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
])
def test_reference_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(old, new, naive(LEAVES))
    assert [h.hex() for h in proof] == path
    assert verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), proof)


MANY = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(64)]


def test_every_inclusion_proof_up_to_64_verifies_and_nothing_else_does() -> None:
    for n in range(1, 65):
        root = root_of(MANY[:n])
        for i in range(n):
            proof = inclusion_proof(i, n, naive(MANY))
            assert verify_inclusion(i, n, MANY[i], proof, root)
            assert not verify_inclusion(i, n, MANY[(i + 1) % 64], proof, root)
            if n > 1:
                assert not verify_inclusion((i + 1) % n, n, MANY[i], proof, root)
                bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not verify_inclusion(i, n, MANY[i], bad, root)
                assert not verify_inclusion(i, n, MANY[i], proof[:-1], root)


def test_every_consistency_proof_up_to_64_verifies_and_nothing_else_does() -> None:
    roots = [root_of(MANY[:n]) for n in range(65)]
    for n in range(1, 65):
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, naive(MANY))
            assert verify_consistency(m, n, roots[m], roots[n], proof)
            if m < n:
                assert not verify_consistency(m, n, roots[m - 1] if m > 1 else MANY[5], roots[n], proof)
                assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)
                bad = [bytes([proof[-1][0] ^ 1]) + proof[-1][1:], *proof[:-1]][::-1]
                assert not verify_consistency(m, n, roots[m], roots[n], [*proof[:-1], bad[0]])
                assert not verify_consistency(m, n, roots[m], roots[n], proof[1:])
    assert verify_consistency(0, 5, EMPTY_ROOT, roots[5], [])


def test_frontier_round_trips_and_reports_completed_subtrees() -> None:
    done: list[tuple[int, int]] = []
    frontier = CompactRange(on_complete=lambda level, idx, h: done.append((level, idx)))
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.root() == root_of(leaves)
    assert done == [(8, 0), (8, 1), (9, 0), (8, 2)]
    again = CompactRange.from_bytes(frontier.size, frontier.to_bytes())
    assert again.root() == frontier.root()
    with pytest.raises(ValueError, match="a frontier of size 3 has 2 hashes, not 1"):
        CompactRange(3, [leaves[0]])
