"""Codex's decomposition probe: problems whose docstrings chain k string operations.

Chen et al. 2021 (section 7, figure 11, appendix C) built synthetic problems from 13 building
blocks, each "a line of text and a line of code" that transforms a string, and found that pass
rates fall roughly exponentially with the number of blocks chained in one docstring (about
2-3x per added block for Codex-12B): a model that writes each step alone still fails to
compose them. This module generates such problems in HumanEval's schema, with the reference
solution and the tests computed from the blocks, and measures pass@k per chain length.

The blocks' text is the paper's (one typo and one verb form fixed). Where its text leaves a
case open, the code here settles it, and the tests pin each choice with hand-worked examples:
  * "remove every third character" removes the 3rd, 6th, 9th, ... character (indices 2, 5,
    8, ...). The paper's own code removes indices 0, 3, 6, ..., which its text does not say.
  * "drop the last half ... by characters" keeps the first len(s) // 2 characters, and "drop
    the first half ... by number of words" keeps the last words from index n_words // 2 on
    (the paper's code): with an odd count the dropped half is the larger one for characters,
    the smaller one for words.
  * Word operations split on whitespace and join with single spaces (the paper's code).
  * "make every other character uppercase" starts with the first character (index 0).
  * "the letter e" is the lowercase letter only (the paper's code).

A chain is k distinct blocks in random order. It is kept only if every block matters: leaving
out any one block, or all of them, changes the output on at least one test input, so a k-chain
really asks for k operations (a chain that removes vowels and then the letter e does not).
Chains are drawn independently, so short lengths repeat chains (there are only 13 of length 1),
each time with other random test inputs. Problem (k, index) depends only on (seed, k, index),
never on the other lengths or the number of problems asked for.
"""

import dataclasses
import functools
import os
import random
import textwrap
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from codex_jax import jsonl
from codex_jax.evaluation import correctness
from codex_jax.evaluation import pass_at_k as pass_at_k_lib
from codex_jax.evaluation import problems as problems_lib
from codex_jax.workdir import Workdir, results_path

ENTRY_POINT = "process"
PLOT_FILENAME = "pass_by_length.png"
MAX_ATTEMPTS = 10_000  # random chains tried per problem before giving up
WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "apple",
    "seven",
    "eleven",
    "queue",
    "sky",
    "rhythm",
    "zebra",
    "echo",
    "open",
    "idea",
    "under",
    "every",
    "needle",
    "art",
)
FIXED_INPUTS = (
    "The quick brown fox jumps over the lazy dog!",
    "How vexingly quick daft zebras jump?",
    "Hello there. Are you seeing EVERY letter?",
)


@dataclasses.dataclass(frozen=True)
class Block:
    """One building block: a docstring clause and the Python expression (of the string `s`) it asks for."""

    name: str
    description: str
    expression: str

    def apply(self, s: str) -> str:
        return eval(_compiled(self.expression), {}, {"s": s})


@functools.cache
def _compiled(expression: str):
    return compile(expression, "<block>", "eval")


BLOCKS = (
    Block(
        "remove_letter_e",
        "remove all instances of the letter e from the string",
        's.replace("e", "")',
    ),
    Block(
        "spaces_to_exclamation_points",
        "replace all spaces with exclamation points in the string",
        's.replace(" ", "!")',
    ),
    Block("lowercase", "convert the string s to lowercase", "s.lower()"),
    Block(
        "remove_two_each_end", "remove the first and last two characters of the string", "s[2:-2]"
    ),
    Block(
        "remove_vowels",
        "remove all vowels from the string",
        '"".join(c for c in s if c not in "aeiouAEIOU")',
    ),
    Block(
        "remove_every_third",
        "remove every third character from the string",
        '"".join(c for i, c in enumerate(s) if i % 3 != 2)',
    ),
    Block(
        "drop_last_half",
        "drop the last half of the string, as computed by characters",
        "s[:len(s) // 2]",
    ),
    Block("triple_spaces", "replace spaces with triple spaces", 's.replace(" ", "   ")'),
    Block("reverse_words", "reverse the order of words in the string", '" ".join(s.split()[::-1])'),
    Block(
        "drop_first_half_words",
        "drop the first half of the string, as computed by number of words",
        '" ".join(s.split()[len(s.split()) // 2:])',
    ),
    Block(
        "add_apples",
        "add the word apples after every word in the string",
        '" ".join(word + " apples" for word in s.split())',
    ),
    Block(
        "every_other_uppercase",
        "make every other character in the string uppercase",
        '"".join(c.upper() if i % 2 == 0 else c for i, c in enumerate(s))',
    ),
    Block(
        "delete_punctuation",
        "delete all exclamation points, question marks, and periods from the string",
        '"".join(c for c in s if c not in "!?.")',
    ),
)
BLOCKS_BY_NAME = {block.name: block for block in BLOCKS}


def apply_chain(blocks: Sequence[Block], s: str) -> str:
    """The blocks applied in order, as the reference solution does."""
    for block in blocks:
        s = block.apply(s)
    return s


def _random_sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
    words = [
        w.upper() if rng.random() < 0.15 else w.capitalize() if rng.random() < 0.3 else w
        for w in words
    ]
    return " ".join(words) + rng.choice(("", ".", "!", "?"))


def _every_block_matters(blocks: Sequence[Block], inputs: Sequence[str]) -> bool:
    outputs = [apply_chain(blocks, s) for s in inputs]
    shorter = [blocks[:i] + blocks[i + 1 :] for i in range(len(blocks))] + [()]
    return all([apply_chain(chain, s) for s in inputs] != outputs for chain in shorter)


def _prompt(blocks: Sequence[Block]) -> str:
    text = ", then ".join(block.description for block in blocks) + ". Return the resulting string."
    docstring = textwrap.fill(
        text[0].upper() + text[1:], width=92, initial_indent='    """', subsequent_indent="    "
    )
    return f'def {ENTRY_POINT}(s: str) -> str:\n{docstring}\n    """\n'


def make_problem(chain_length: int, index: int, seed: int = 0) -> dict[str, Any]:
    """Problem `index` of `chain_length` blocks, in HumanEval's schema plus `chain_length` and `blocks`.

    Raises:
        ValueError: chain_length is not in 1..13 (the blocks are distinct).
    """
    if not 1 <= chain_length <= len(BLOCKS):
        raise ValueError(
            f"chain_length must be in 1..{len(BLOCKS)} (distinct blocks), got {chain_length}"
        )
    rng = random.Random(f"chained:{seed}:{chain_length}:{index}")
    inputs = list(FIXED_INPUTS) + [_random_sentence(rng) for _ in range(3)]
    for _ in range(MAX_ATTEMPTS):
        blocks = rng.sample(BLOCKS, chain_length)
        if _every_block_matters(blocks, inputs):
            break
    else:
        raise RuntimeError(
            f"no chain of {chain_length} blocks in which every block matters after "
            f"{MAX_ATTEMPTS} tries (seed {seed}, index {index})"
        )
    asserts = "".join(
        f"    assert candidate({s!r}) == {apply_chain(blocks, s)!r}\n" for s in inputs
    )
    return {
        "task_id": f"Chained/{chain_length}/{index}",
        "prompt": _prompt(blocks),
        "entry_point": ENTRY_POINT,
        "canonical_solution": "".join(f"    s = {block.expression}\n" for block in blocks)
        + "    return s\n",
        "test": f"def check(candidate):\n{asserts}",
        "chain_length": chain_length,
        "blocks": [block.name for block in blocks],
    }


def make_problems(
    chain_lengths: Sequence[int], per_length: int, seed: int = 0
) -> list[dict[str, Any]]:
    """`per_length` problems of each chain length, in the order given."""
    return [make_problem(k, index, seed) for k in chain_lengths for index in range(per_length)]


def write_problems(
    path: str | os.PathLike, chain_lengths: Sequence[int], per_length: int, seed: int = 0
) -> str:
    """Writes `make_problems(...)` as a JSONL(.gz) problem file that `problems.read_problems` and
    `evaluation.evaluate_functional_correctness(..., problem_file=path)` read; returns the path."""
    path = os.fspath(path)
    jsonl.write_jsonl(path, make_problems(chain_lengths, per_length, seed))
    return path


def pass_by_length(
    results_file: str | os.PathLike, problems: dict[str, dict[str, Any]], k: Sequence[int]
) -> list[dict[str, Any]]:
    """pass@k per chain length from an evaluation's `<samples>_results.jsonl`.

    Returns one row per chain length, ascending: {chain_length, problems, samples, "pass@k"...};
    a k is reported only when every problem of that length has >= k samples.
    """
    counts = pass_at_k_lib.count_by_problem(jsonl.read_jsonl(results_file))
    rows = []
    for length in sorted({problems[task]["chain_length"] for task in counts}):
        of_length = {
            task: c for task, c in counts.items() if problems[task]["chain_length"] == length
        }
        rows.append(
            {
                "chain_length": length,
                "problems": len(of_length),
                "samples": sum(samples for samples, _ in of_length.values()),
                **pass_at_k_lib.pass_at_k(of_length, k),
            }
        )
    return rows


def _pass_names(results: Sequence[dict[str, Any]]) -> list[str]:
    names = {key for row in results for key in row if key.startswith("pass@")}
    return sorted(names, key=lambda name: int(name.split("@")[1]))


def decay_per_block(results: Sequence[dict[str, Any]], name: str = "pass@1") -> float | None:
    """The factor by which `name` falls per added block: exp(-slope) of a least-squares line
    through (chain length, log pass rate) over the lengths with a positive rate; None with fewer
    than two such lengths."""
    points = [(row["chain_length"], row[name]) for row in results if row.get(name, 0.0) > 0.0]
    if len(points) < 2:
        return None
    lengths, rates = np.array(points).T
    slope = np.polyfit(lengths, np.log(rates), 1)[0]
    return float(np.exp(-slope))


def plot_pass_by_length(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> str:
    """A PNG of each pass@k against chain length, log y as the paper's figure 11 (rates of zero,
    which a log axis cannot show, are left out of the lines; the table has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    for name in _pass_names(results):
        points = [(row["chain_length"], row[name]) for row in results if row.get(name, 0.0) > 0.0]
        if points:
            axis.plot(*zip(*points), marker="o", label=name)
    axis.set(
        title="pass rate against chained building blocks",
        xlabel="blocks chained in the docstring",
        ylabel="pass rate",
        yscale="log",
    )
    lengths = [row["chain_length"] for row in results]
    axis.set_xticks(lengths)
    axis.set_xlim(min(lengths) - 0.5, max(lengths) + 0.5)
    axis.grid(alpha=0.3, which="both")
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
        axis.set_ylim(top=1.2)
    else:
        axis.set_ylim(1e-3, 1.2)
        axis.text(
            0.5, 0.5, "no sample passed at any chain length", transform=axis.transAxes, ha="center"
        )
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_section(results: Sequence[dict[str, Any]], image: str = PLOT_FILENAME) -> str:
    """Markdown: the table of pass@k per chain length, the decay per block, and the plot at `image`
    (a path relative to the markdown file)."""
    names = _pass_names(results)
    lines = [
        "## Decomposition: pass rate against chained operations",
        "",
        "Docstrings chain k of the 13 string operations of Codex's appendix C "
        "(Chen et al. 2021, section 7, figure 11); every operation of a chain changes its output.",
        "",
        "| chain length | problems | samples | " + " | ".join(names) + " |",
        "|" + "---|" * (3 + len(names)),
    ]
    lines += [
        f"| {row['chain_length']} | {row['problems']} | {row['samples']} | "
        + " | ".join(f"{row[name]:.4f}" if name in row else "" for name in names)
        + " |"
        for row in results
    ]
    factor = decay_per_block(results)
    lines += [
        "",
        f"pass@1 falls by a factor of {factor:.2f} per added block (least-squares fit of "
        "log pass@1 on chain length; Codex-12B: about 2-3)."
        if factor is not None
        else "Fewer than two chain lengths have a positive pass@1: no decay rate to fit.",
        "",
        f"![pass rate against chain length]({image})",
    ]
    return "\n".join(lines)


def run(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    chain_lengths: Sequence[int],
    per_length: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The probe on the latest checkpoint of `workdir`; returns `pass_by_length`'s rows.

    Writes workdir/chained/: problems.jsonl, samples.jsonl (+ _results.jsonl, the executor's
    verdicts), results.json, pass_by_length.png and chained.md. Sampling settings come from
    `config.sample` (n samples per problem), execution settings and k from `config.eval`.
    Samples are kept when checkpoint, settings and problems are unchanged; sampling and execution
    resume after an interruption.
    """
    workdir = os.fspath(workdir)
    folder = Workdir(workdir).chained
    os.makedirs(folder, exist_ok=True)
    problem_file = write_problems(
        os.path.join(folder, "problems.jsonl"), chain_lengths, per_length, seed
    )
    problems = problems_lib.read_problems(problem_file)
    config = ml_collections.ConfigDict(config.to_dict())
    config.eval.problem_file, config.sample.limit, config.eval.ignore_incomplete = (
        problem_file,
        0,
        False,
    )
    from codex_jax.sampling import samples  # the model stack loads only to sample

    sample_file = samples.ensure_samples(
        config, workdir, path=os.path.join(folder, "samples.jsonl")
    )
    correctness.evaluate_with_config(config, sample_file)
    results = pass_by_length(results_path(sample_file), problems, tuple(config.eval.k))
    jsonl.write_json_atomically(os.path.join(folder, "results.json"), results)
    plot_pass_by_length(results, os.path.join(folder, PLOT_FILENAME))
    jsonl.write_text_atomically(os.path.join(folder, "chained.md"), report_section(results) + "\n")
    return results
