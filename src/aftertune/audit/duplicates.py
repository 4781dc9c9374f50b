"""Detector `duplicate`: exact and near-duplicate rows.

Exact: the same conversation after lower-casing and collapsing whitespace (a 16-byte blake2b digest per
row). Near: MinHash over word 3-gram shingles with locality-sensitive hashing (datasketch; Broder 1997),
at estimated Jaccard similarity >= `threshold`, over the first `near_limit` rows (the LSH index grows
with every row it holds; later rows are checked for exact duplicates only, which the summary says).
Each finding names the earlier row it repeats. Score: 1.0 exact, else the estimated Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import re

from datasketch import MinHash, MinHashLSH

from aftertune.audit.findings import DUPLICATE, Finding
from aftertune.audit.rows import AuditRow

NUM_PERM = 64
_WORD = re.compile(r"\w+")


def _normalised(row: AuditRow) -> str:
    return "\n".join(f"{m.role}: {' '.join(m.content.lower().split())}" for m in row.messages)


class DuplicateFinder:
    """Streams rows; each row that repeats an earlier one (exactly or nearly) becomes a finding."""

    def __init__(self, threshold: float = 0.85, near_limit: int = 100_000) -> None:
        self.threshold = threshold
        self.near_limit = near_limit
        self._exact: dict[bytes, tuple[int, int]] = {}
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._signatures: dict[int, MinHash] = {}
        self._lines: dict[int, int] = {}
        self.near_checked = 0
        #: rows past `near_limit`, checked for exact duplicates only
        self.near_unchecked = 0
        self.exact_count = 0
        self.near_count = 0

    def observe(self, rows: list[AuditRow]) -> list[Finding]:
        out = []
        for row in rows:
            text = _normalised(row)
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            first = self._exact.setdefault(digest, (row.row, row.line))
            if first[0] != row.row:
                self.exact_count += 1
                reason = f"exact duplicate of row {first[0]} (line {first[1]})"
                out.append(
                    Finding(row.row, row.line, DUPLICATE, 1.0, reason, {"of_row": first[0], "exact": True})
                )
                continue
            if self.near_checked >= self.near_limit:
                self.near_unchecked += 1
                continue
            self.near_checked += 1
            signature = _minhash(text)
            similar = [(signature.jaccard(self._signatures[k]), k) for k in self._lsh.query(signature)]
            similar = [(j, k) for j, k in similar if j >= self.threshold]
            if similar:
                jaccard, of_row = max(similar, key=lambda s: (s[0], -s[1]))
                self.near_count += 1
                where = f"row {of_row} (line {self._lines[of_row]}"
                reason = f"near-duplicate of {where}; estimated Jaccard {jaccard:.2f})"
                details = {"of_row": of_row, "exact": False, "jaccard": round(jaccard, 3)}
                out.append(Finding(row.row, row.line, DUPLICATE, jaccard, reason, details))
                continue  # index only originals, so a cluster points at its first row
            self._lsh.insert(row.row, signature)
            self._signatures[row.row] = signature
            self._lines[row.row] = row.line
        return out


def _minhash(text: str) -> MinHash:
    words = _WORD.findall(text)
    shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch([s.encode() for s in shingles] or [b""])
    return m
