"""A Hugging Face byte-level BPE tokenizer (GPT-2, GPT-NeoX, GPTBigCode, Llama 3, SmolLM, Qwen2,
StarCoder2) as the sampler's tokenizer, through the `tokenizers` library (imported only when
one is made), with the checkpoint's chat template (rendered by jinja2 as transformers does)."""

import json
import os
from typing import Any

import numpy as np

BUNDLE_FORMAT = "codex_jax.hf_tokenizer/1"


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
    """A byte-level BPE tokenizer as `codex_jax.sampling.completions.Tokenizer`.

    `vocab_size` is the model's (often padded past the tokenizer's); ids the tokenizer lacks
    and special tokens (end of document included) decode to nothing. `chat_template` is the
    checkpoint's jinja template, or None.
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        eod_id: int,
        pad_id: int,
        bos_id: int | None = None,
        chat_template: str | None = None,
        source: str = "tokenizer",
    ):
        decoder = json.loads(tokenizer.to_str()).get("decoder") or {}
        if decoder.get("type") != "ByteLevel":
            raise ValueError(
                f"{source}: decoder {decoder.get('type')!r}; only byte-level BPE tokenizers "
                f"(GPT-2, GPT-NeoX, GPTBigCode, Llama 3, Qwen2, SmolLM) are supported"
            )
        self.tokenizer = tokenizer
        self.vocab_size, self.eod_id, self.pad_id, self.bos_id = vocab_size, eod_id, pad_id, bos_id
        self.chat_template = chat_template
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
        """tokenizer.json of a save_pretrained folder, with tokenizer_config.json's (or
        chat_template.jinja's) chat template and config.json's special ids."""
        import tokenizers

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
        template = None
        config_path = os.path.join(directory, "tokenizer_config.json")
        if os.path.exists(config_path):
            with open(config_path, encoding="utf-8") as f:
                template = json.load(f).get("chat_template")
        jinja_path = os.path.join(directory, "chat_template.jinja")
        if os.path.exists(jinja_path):
            with open(jinja_path, encoding="utf-8") as f:
                template = f.read()
        return cls(
            tokenizers.Tokenizer.from_file(path),
            vocab_size,
            eod_id,
            eod_id if pad_id is None else pad_id,
            bos_id=hf.get("bos_token_id"),
            chat_template=template,
            source=path,
        )

    def to_bundle(self) -> str:
        """One JSON text holding the tokenizer and its special ids, which `from_bundle` reads back
        (what a workdir started from an imported model keeps as its tokenizer.model)."""
        return json.dumps(
            {
                "format": BUNDLE_FORMAT,
                "tokenizer": json.loads(self.tokenizer.to_str()),
                "vocab_size": self.vocab_size,
                "eod_id": self.eod_id,
                "pad_id": self.pad_id,
                "bos_id": self.bos_id,
                "chat_template": self.chat_template,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_bundle(cls, text: str, source: str = "tokenizer") -> "HFTokenizer":
        import tokenizers

        bundle = json.loads(text)
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"{source}: not a {BUNDLE_FORMAT} tokenizer bundle")
        return cls(
            tokenizers.Tokenizer.from_str(json.dumps(bundle["tokenizer"])),
            bundle["vocab_size"],
            bundle["eod_id"],
            bundle["pad_id"],
            bos_id=bundle["bos_id"],
            chat_template=bundle["chat_template"],
            source=source,
        )

    def save(self, directory: str) -> None:
        """tokenizer.json and tokenizer_config.json, as transformers' AutoTokenizer reads them."""
        self.tokenizer.save(os.path.join(directory, "tokenizer.json"))
        token = self.tokenizer.id_to_token
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": token(self.eod_id),
            "pad_token": token(self.pad_id),
            "bos_token": None if self.bos_id is None else token(self.bos_id),
            "chat_template": self.chat_template,
        }
        with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)

    def apply_chat_template(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The conversation as text the way transformers' `apply_chat_template(messages,
        add_generation_prompt=..., tokenize=False)` renders it (a sandboxed jinja2
        environment, blocks trimmed): with the generation prompt, ready for the assistant's
        next turn."""
        if not self.chat_template:
            raise ValueError("this checkpoint has no chat template; use prompt_format=completion")
        import jinja2
        from jinja2 import sandbox

        def raise_exception(message: str):
            raise jinja2.exceptions.TemplateError(message)

        environment = sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        environment.globals["raise_exception"] = raise_exception
        token = self.tokenizer.id_to_token
        return environment.from_string(self.chat_template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=token(self.bos_id) if self.bos_id is not None else "",
            eos_token=token(self.eod_id),
        )

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

    def token_byte_lengths(self) -> np.ndarray:
        """int32 [vocab_size]: UTF-8 bytes each id contributes when decoded (0 for specials)."""
        return np.array([len(b) for b in self._bytes], dtype=np.int32)
