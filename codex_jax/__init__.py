"""codex_jax: OpenAI Codex (Chen et al. 2021) reimplemented in JAX.

Importing the package does no work and imports no JAX: `codex_jax.sandbox.executor` and
`codex_jax.evaluation` stay usable on machines that only evaluate samples.
"""

__version__ = "0.1.0"
