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

Learning the blocks: `training_problems` gives fine-tuning pairs (`config.finetune.
synthetic_pairs`) of every single block and of the training share of the 2-block chains
(`two_block_split`); the task (`TASK`, `config.tasks.chained`) then evaluates 2-block chains
only from the held-out pairs and longer ones checked against `training_chains`.
"""

import dataclasses
import functools
import random
import textwrap
from collections.abc import Sequence
from typing import Any

import ml_collections

from codex_jax.tasks import chained_report
from codex_jax.tasks.base import Problems, Task
from codex_jax.tasks.humaneval import CODEX_STOPS

ENTRY_POINT = "process"
MAX_ATTEMPTS = 10_000  # random chains tried per problem before giving up
WORDS = tuple(
    "the quick brown fox jumps over lazy dog apple seven eleven queue sky rhythm zebra echo open"
    " idea under every needle art".split()
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


def _problem(task_id: str, blocks: Sequence[Block], inputs: Sequence[str]) -> dict[str, Any]:
    asserts = "".join(
        f"    assert candidate({s!r}) == {apply_chain(blocks, s)!r}\n" for s in inputs
    )
    return {
        "task_id": task_id,
        "prompt": _prompt(blocks),
        "entry_point": ENTRY_POINT,
        "canonical_solution": "".join(f"    s = {block.expression}\n" for block in blocks)
        + "    return s\n",
        "test": f"def check(candidate):\n{asserts}",
        "chain_length": len(blocks),
        "blocks": [block.name for block in blocks],
    }


def _inputs(rng: random.Random) -> list[str]:
    return list(FIXED_INPUTS) + [_random_sentence(rng) for _ in range(3)]


@functools.cache
def two_block_split(seed: int = 0, train_share: float = 0.5) -> tuple[tuple, tuple]:
    """(training, held-out) 2-block chains, as block-name pairs: the ordered pairs in which both
    blocks matter on `FIXED_INPUTS`, shuffled by `seed`, the first `train_share` for training."""
    pairs = [
        (a.name, b.name)
        for a in BLOCKS
        for b in BLOCKS
        if a is not b and _every_block_matters((a, b), FIXED_INPUTS)
    ]
    random.Random(f"chained-split:{seed}").shuffle(pairs)
    cut = round(train_share * len(pairs))
    return tuple(sorted(pairs[:cut])), tuple(sorted(pairs[cut:]))


def training_chains(seed: int = 0, train_share: float = 0.5) -> tuple[tuple[str, ...], ...]:
    """Every chain fine-tuning may see: each single block, and the training 2-block chains."""
    return tuple((block.name,) for block in BLOCKS) + two_block_split(seed, train_share)[0]


def make_problem(
    chain_length: int, index: int, seed: int = 0, train_share: float | None = None
) -> dict[str, Any]:
    """Problem `index` of `chain_length` blocks, in HumanEval's schema plus `chain_length` and `blocks`.

    With `train_share` (the fine-tuning split, `two_block_split`), chains of 2 or more blocks are
    never training chains: 2-block chains come from the held-out pairs, longer ones are checked
    against `training_chains`. Single blocks are all seen in training.

    Raises:
        ValueError: chain_length is not in 1..13 (the blocks are distinct).
    """
    if not 1 <= chain_length <= len(BLOCKS):
        raise ValueError(
            f"chain_length must be in 1..{len(BLOCKS)} (distinct blocks), got {chain_length}"
        )
    rng = random.Random(f"chained:{seed}:{chain_length}:{index}")
    inputs = _inputs(rng)
    seen = set(training_chains(seed, train_share)) if train_share is not None else set()
    held_out = two_block_split(seed, train_share)[1] if train_share is not None else ()
    for _ in range(MAX_ATTEMPTS):
        if chain_length == 2 and held_out:
            blocks = [BLOCKS_BY_NAME[name] for name in rng.choice(held_out)]
        else:
            blocks = rng.sample(BLOCKS, chain_length)
        names = tuple(block.name for block in blocks)
        if (chain_length == 1 or names not in seen) and _every_block_matters(blocks, inputs):
            break
    else:
        raise RuntimeError(
            f"no chain of {chain_length} blocks in which every block matters after "
            f"{MAX_ATTEMPTS} tries (seed {seed}, index {index})"
        )
    return _problem(f"Chained/{chain_length}/{index}", blocks, inputs)


def make_problems(
    chain_lengths: Sequence[int], per_length: int, seed: int = 0, train_share: float | None = None
) -> list[dict[str, Any]]:
    """`per_length` problems of each chain length, in the order given."""
    return [
        make_problem(k, index, seed, train_share)
        for k in chain_lengths
        for index in range(per_length)
    ]


def training_problems(n: int, seed: int = 0, train_share: float = 0.5) -> list[dict[str, Any]]:
    """`n` synthetic fine-tuning problems: `training_chains` in turn (each about n / len(chains)
    times), each time on its own random test inputs; the canonical solution is the completion."""
    chains = training_chains(seed, train_share)
    problems = []
    for index in range(n):
        blocks = [BLOCKS_BY_NAME[name] for name in chains[index % len(chains)]]
        inputs = _inputs(random.Random(f"chained-train:{seed}:{index}"))
        problems.append(_problem(f"ChainedTrain/{index}", blocks, inputs))
    return problems


def load(config: ml_collections.ConfigDict) -> Problems:
    c = config.tasks.chained
    problems = make_problems(tuple(c.lengths), c.per_length, c.seed, c.train_share)
    return {p["task_id"]: p for p in problems}


TASK = Task(
    name="chained",
    title="Decomposition: chained string operations",
    convention="Codex, section 7 and appendix C: a function whose docstring chains k of 13 "
    "string operations; HumanEval's stops",
    stop=CODEX_STOPS,
    load=load,
    decontaminate=False,
    report=chained_report.report,
)
