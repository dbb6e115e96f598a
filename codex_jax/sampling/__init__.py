"""Sampling: the jitted decode loop, stop sequences, and the text-in, completions-out sampler."""
