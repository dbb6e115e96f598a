"""Evaluation tasks beyond HumanEval, generated as problem files in HumanEval's schema."""
