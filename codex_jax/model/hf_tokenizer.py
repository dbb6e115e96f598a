"""A Hugging Face byte-level BPE `tokenizer.json` (GPT-2, GPT-NeoX, GPTBigCode) as the sampler's
tokenizer, through the `tokenizers` library (imported only when one is made)."""

import json
import os
from typing import Any


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as a printable character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


class HFTokenizer:
    """A byte-level BPE `tokenizer.json` as `codex_jax.sampling.completions.Tokenizer`.

    `vocab_size` is the model's (often padded past the tokenizer's); ids the tokenizer lacks
    and special tokens (end of document included) decode to nothing.
    """

    def __init__(self, path: str, vocab_size: int, eod_id: int, pad_id: int):
        import tokenizers

        self.tokenizer = tokenizers.Tokenizer.from_file(path)
        decoder = json.loads(self.tokenizer.to_str()).get("decoder") or {}
        if decoder.get("type") != "ByteLevel":
            raise ValueError(
                f"{path}: decoder {decoder.get('type')!r}; only byte-level BPE tokenizers "
                f"(GPT-2, GPT-NeoX, GPTBigCode) are supported"
            )
        self.vocab_size, self.eod_id, self.pad_id = vocab_size, eod_id, pad_id
        to_byte = {c: b for b, c in _bytes_to_unicode().items()}
        special = {
            token.content
            for token in self.tokenizer.get_added_tokens_decoder().values()
            if token.special
        }
        self._bytes = []
        for token_id in range(vocab_size):
            token = self.tokenizer.id_to_token(token_id)
            self._bytes.append(
                b"" if token is None or token in special else bytes(to_byte[c] for c in token)
            )

    @classmethod
    def from_directory(cls, directory: str, hf: dict[str, Any], vocab_size: int) -> "HFTokenizer":
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no tokenizer.json (the `tokenizers` library's file)")
        eod_id = hf.get("eos_token_id")
        eod_id = eod_id[0] if isinstance(eod_id, list) else eod_id
        if eod_id is None:
            raise ValueError(
                f"{directory}/config.json: no eos_token_id (the end-of-document token)"
            )
        pad_id = hf.get("pad_token_id")
        return cls(path, vocab_size, eod_id, eod_id if pad_id is None else pad_id)

    def encode_prompt(self, text: str) -> list[int]:
        """The ids a prompt is given to the model as: the tokenizer's own encoding with its special
        tokens (a BOS where its post-processor adds one), as transformers' `tokenizer(text)`;
        end-of-document alone for an empty prompt (the model needs one token to continue)."""
        return self.tokenizer.encode(text, add_special_tokens=True).ids or [self.eod_id]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        return b"".join(self._bytes[i] for i in ids)

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
