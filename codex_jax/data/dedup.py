"""Finding copies: code-token hashing, MinHash near-duplicates, and evaluation-problem n-grams.

Text is compared as code tokens (identifiers, keywords, numbers and the words of strings and
comments), each hashed once; n-grams of consecutive tokens get 64-bit polynomial hashes. Two
uses:
  - near duplicates: the MinHash signature of a file's 5-token shingles, looked up in an LSH
    index of the files kept so far (`Deduplicator` adds exact duplicates by content digest);
  - decontamination: `ProblemIndex` holds the n-grams of the evaluation problems and says which
    problems a text shares an n-gram with.
Every hash is stable across processes and runs, so workers can hash and the parent can compare.
"""

import collections
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

# Code tokens for decontamination and MinHash: identifiers, keywords, numbers and the words of
# strings and comments. Punctuation is left out: 13 tokens that count it are as short as
# `[1, 2, 3, 4, 5, 6, 7]`, and such n-grams dropped 93 standard-library files (test data lists).
CODE_TOKEN = re.compile(r"\w+")
SHINGLE_TOKENS = 5  # MinHash shingles: 5 consecutive code tokens (as BigCode's near-dedup)
# A problem n-gram found in more than this many problems is HumanEval boilerplate ("Check some
# edge cases that are easy to work out by hand", METADATA), not one problem's content; the
# n-grams shared by exactly two problems are real shared code (HumanEval/0 and /20).
DECONTAM_MAX_PROBLEMS = 2
_HASH_BASE = np.uint64(0x100000001B3)  # odd multiplier of the polynomial n-gram hash
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier that spreads 32-bit hashes over 64 bits


# --- tokens and n-grams ---------------------------------------------------------------------------


def token_hashes(text: str) -> tuple[list[str], np.ndarray]:
    """The code tokens of `text` and their hashes, (T,) uint64.

    Each distinct token is hashed once with CRC-32 (stable across processes and runs, unlike
    `hash`, and 3x faster than blake2b), spread over 64 bits by an odd multiplier. 32 bits per
    token are plenty: n-grams combine 5 to 13 of them into a 64-bit hash.
    """
    tokens = CODE_TOKEN.findall(text)
    index = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    ids = np.fromiter(map(index.__getitem__, tokens), np.int64, len(tokens))
    crcs = np.fromiter((zlib.crc32(t.encode()) for t in index), np.uint64, len(index))
    return tokens, (crcs * _SPREAD)[ids]


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hashes of every window of `n` consecutive token hashes: (T,) -> (max(T-n+1, 0),)."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    windows = hashes[:count].copy()
    for offset in range(1, n):  # uint64 arithmetic wraps around, which is the modulus we want
        windows = windows * _HASH_BASE + hashes[offset : offset + count]
    return windows


# --- near duplicates: MinHash and LSH -------------------------------------------------------------


def minhash_parameters(num_perm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multiply-shift hash functions h(x) = (a*x + b) mod 2^64 >> 32: a odd, each (num_perm,) uint64."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
    b = rng.integers(0, 2**64, num_perm, dtype=np.uint64, endpoint=False)
    return a, b


def minhash_signature(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash of a set of 64-bit shingle hashes (S,), repeats allowed, under each hash: (P,) uint32."""
    keys = np.sort((shingles ^ (shingles >> np.uint64(32))) & np.uint64(0xFFFFFFFF))  # 32-bit keys
    keys = keys[
        np.concatenate([[True], keys[1:] != keys[:-1]])
    ]  # distinct (np.unique hashes: slower)
    signature = np.full(len(a), 0xFFFFFFFF, np.uint64)
    for start in range(0, len(keys), 1024):  # (1024, P) blocks, updated in place, stay in cache
        block = np.multiply(keys[start : start + 1024, None], a)
        block += b
        block >>= np.uint64(32)
        np.minimum(signature, block.min(axis=0), out=signature)
    return signature.astype(np.uint32)


def shingle_signature(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash (P,) uint32 of a text's shingles of SHINGLE_TOKENS tokens, from its token hashes (T,);
    a text shorter than a shingle is one shingle."""
    return minhash_signature(ngram_hashes(hashes, min(SHINGLE_TOKENS, max(len(hashes), 1))), a, b)


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm, whose S-curve knee (1/bands)^(1/rows) is nearest
    `threshold`: pairs above it become candidates with probability 1 - (1 - J^rows)^bands."""
    pairs = [(num_perm // rows, rows) for rows in range(1, num_perm + 1)]
    return min(pairs, key=lambda p: abs((1 / p[0]) ** (1 / p[1]) - threshold))


class NearDuplicateIndex:
    """LSH over MinHash signatures of kept files; candidates are confirmed by estimated Jaccard."""

    def __init__(self, threshold: float, num_perm: int):
        self.threshold = threshold
        self.bands, self.rows = lsh_bands(threshold, num_perm)
        self._buckets: dict[int, list[int]] = {}  # hash of (band index, band values) -> kept ids
        self._signatures: list[np.ndarray] = []

    def _keys(self, signature: np.ndarray) -> list[int]:
        """One bucket key per band: a hash of the band's index and its `rows` values."""
        bands = signature[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        keys = np.arange(self.bands, dtype=np.uint64)  # equal values in different bands differ
        for column in bands.T:
            keys = keys * _HASH_BASE + column
        return keys.tolist()

    def query(self, signature: np.ndarray) -> tuple[int, float] | None:
        """(id, estimated Jaccard) of the most similar kept file at or above threshold, or None."""
        candidates = {i for key in self._keys(signature) for i in self._buckets.get(key, ())}
        best = max(
            ((i, float(np.mean(self._signatures[i] == signature))) for i in sorted(candidates)),
            key=lambda pair: pair[1],
            default=None,
        )
        return best if best is not None and best[1] >= self.threshold else None

    def add(self, signature: np.ndarray) -> int:
        """Indexes a kept file's signature; returns its id (0, 1, ... in the order added)."""
        index = len(self._signatures)
        self._signatures.append(signature)
        for key in self._keys(signature):
            self._buckets.setdefault(key, []).append(index)
        return index


class Duplicate(NamedTuple):
    """Why a file copies one kept earlier."""

    reason: str  # "exact_duplicate" or "near_duplicate"
    similar_to: str | None = None  # near duplicates: the kept file's path
    jaccard_estimate: float | None = None  # near duplicates: MinHash estimate


class Deduplicator:
    """Exact and near-duplicate decisions in stream order (the first file kept wins); holds content
    digests, MinHash signatures and paths of kept files, never their contents."""

    def __init__(self, threshold: float, num_perm: int):
        self._digests: set[bytes] = set()
        self._near = NearDuplicateIndex(threshold, num_perm)
        self._paths: list[str] = []  # by NearDuplicateIndex id, to name what a dropped file copies

    def check(self, digest: bytes, signature: np.ndarray) -> Duplicate | None:
        """How a file (content digest, MinHash signature (P,)) copies a kept one, or None."""
        if digest in self._digests:
            return Duplicate("exact_duplicate")
        match = self._near.query(signature)
        if match is None:
            return None
        return Duplicate("near_duplicate", self._paths[match[0]], match[1])

    def add(self, path: str, digest: bytes, signature: np.ndarray) -> None:
        """Records a kept file."""
        self._digests.add(digest)
        self._near.add(signature)
        self._paths.append(path)


# --- decontamination: evaluation-problem n-grams --------------------------------------------------


def _line_key(line: str) -> str:
    """A line as its code tokens: `#assert True, "x"` and `assert True, 'x'` are the same line."""
    return " ".join(CODE_TOKEN.findall(line))


def problem_ngrams(
    problems: Iterable[Mapping[str, Any]], n: int
) -> tuple[dict[int, tuple[str, ...]], dict[str, int]]:
    """Hashes of the `n`-token n-grams of each problem's prompt + canonical_solution and of its
    test, mapped to the task ids they occur in.

    Left out, as they carry no problem's identity: test lines found in the tests of more than
    DECONTAM_MAX_PROBLEMS problems (METADATA, `def check(candidate):`, "# Check some edge cases
    that are easy to work out by hand."), n-grams found in more than that many problems, and
    n-grams of numbers only (counting sequences, runs of zeros, primes: they dropped 13 standard
    library files). Returns (n-gram hash -> task ids, {"common_test_lines", "common_ngrams",
    "numeric_ngrams"}: how many of each were left out).
    """
    problems = list(problems)
    line_counts = collections.Counter(
        key for p in problems for key in {_line_key(line) for line in p["test"].split("\n")}
    )
    common_lines = {key for key, count in line_counts.items() if count > DECONTAM_MAX_PROBLEMS}
    owners: dict[int, set[str]] = collections.defaultdict(set)
    numeric_only: set[int] = set()
    for problem in problems:
        test = "\n".join(
            line for line in problem["test"].split("\n") if _line_key(line) not in common_lines
        )
        for text in (problem["prompt"] + problem.get("canonical_solution", ""), test):
            tokens, hashes = token_hashes(text)
            numbers = np.cumsum([0] + [token.isdigit() for token in tokens])
            for start, key in enumerate(ngram_hashes(hashes, n).tolist()):
                owners[key].add(problem["task_id"])
                if numbers[start + n] - numbers[start] == n:
                    numeric_only.add(key)
    common = {key for key, tasks in owners.items() if len(tasks) > DECONTAM_MAX_PROBLEMS}
    kept = {
        key: tuple(sorted(tasks))
        for key, tasks in owners.items()
        if key not in common and key not in numeric_only
    }
    return kept, {
        "common_test_lines": len(common_lines),
        "common_ngrams": len(common),
        "numeric_ngrams": len(numeric_only - common),
    }


class Contamination(NamedTuple):
    """What a text shares with the evaluation problems."""

    problems: tuple[str, ...]  # task ids of every shared n-gram, sorted
    ngram: str  # the first shared n-gram of the text, its tokens joined by spaces


class ProblemIndex:
    """The n-grams of evaluation problems (see problem_ngrams): which problems a text shares one with.

    Picklable (a sorted array and a dict), so worker processes can hold one.

    Attributes:
        n: tokens per n-gram.
        left_out: what problem_ngrams left out, by kind.
    """

    def __init__(self, problems: Iterable[Mapping[str, Any]], n: int):
        self.n = n
        self._owners, self.left_out = problem_ngrams(problems, n)
        self._keys = np.array(sorted(self._owners), np.uint64)  # (K,) sorted, for binary search

    def __len__(self) -> int:
        """Problem n-grams indexed."""
        return len(self._keys)

    def find(self, tokens: list[str], hashes: np.ndarray) -> Contamination | None:
        """What a text, given as its token_hashes (tokens and (T,) hashes), shares, or None."""
        ngrams = ngram_hashes(hashes, self.n)
        if len(self._keys) == 0 or len(ngrams) == 0:
            return None
        # a binary search: np.isin hashes both sides and is 5x slower
        positions = np.minimum(np.searchsorted(self._keys, ngrams), len(self._keys) - 1)
        shared = np.flatnonzero(self._keys[positions] == ngrams)
        if len(shared) == 0:
            return None
        owners = {task for key in np.unique(ngrams[shared]).tolist() for task in self._owners[key]}
        first = int(shared[0])
        return Contamination(tuple(sorted(owners)), " ".join(tokens[first : first + self.n]))

    def shared_problems(self, text: str) -> tuple[str, ...]:
        """Task ids (sorted) of the problems `text` shares an n-gram with; () when none."""
        found = self.find(*token_hashes(text))
        return found.problems if found is not None else ()
