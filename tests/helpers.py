"""Data that tests in several folders share."""

import numpy as np


def make_documents(n: int, seed: int) -> list[str]:
    """Distinct small files; some non-ASCII and a U+2581 so byte-fallback ids appear in the data."""
    rng = np.random.default_rng(seed)
    return [
        f"# file {seed}-{i} ✓ \u2581\n"
        + "".join(
            f"def f_{i}_{j}(x):\n    return x * {int(rng.integers(1000))}\n\n"
            for j in range(int(rng.integers(1, 6)))
        )
        for i in range(n)
    ]


DOCUMENTS = make_documents(110, seed=0)
