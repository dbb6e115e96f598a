"""Instruct prompts (config.sample.prompt_format = "chat"): the prompt as evalplus builds it with
transformers' own chat templating, the code-block extraction on hand-written answers, whole-
program scoring, and the samples of an imported instruct model against `generate`."""

import json

import pytest
import torch
import transformers

from codex_jax import jsonl
from codex_jax.evaluation import correctness
from codex_jax.model import hf
from codex_jax.sampling import chat, samples
from configs import tiny
from tests.model.test_hf import EOD, save_random_model

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TASK_PROMPT = 'def add(a, b):\n    """Sum."""\n'


@pytest.fixture
def instruct_model(tmp_path):
    """A random Llama with a ChatML template (transformers 5 keeps it in tokenizer_config.json)."""
    hf_model = save_random_model("llama", str(tmp_path), max_position_embeddings=512)
    with open(tmp_path / "tokenizer_config.json", "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": TEMPLATE}, f)
    theirs = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "tokenizer.json"), chat_template=TEMPLATE
    )
    return tmp_path, hf_model, theirs


def evalplus_prompt(tokenizer, task_prompt: str) -> str:
    """evalplus's make_raw_chat_prompt, spelled out with transformers' apply_chat_template."""
    user = f"{chat.INSTRUCTION}\n```\n{task_prompt.strip()}\n```\n"
    assistant = f"{chat.RESPONSE}\n```python\n{chat.SPLITTER}\n```\n"
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        tokenize=False,
    ).split(chat.SPLITTER)[0]


def test_chat_prompt_is_evalplus_prompt_rendered_as_transformers_does(instruct_model):
    directory, _, theirs = instruct_model
    ours = chat.prompt(hf.load(directory)[2], TASK_PROMPT)
    assert ours == evalplus_prompt(theirs, TASK_PROMPT)
    assert ours.endswith("<|im_start|>assistant\n" + chat.RESPONSE + "\n```python\n")


def test_chat_prompt_needs_a_chat_template():
    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="prompt_format = 'chat' needs .* chat template"):
        chat.prompt(NoTemplate(), TASK_PROMPT)


@pytest.mark.parametrize(
    "answer, code",
    [
        ("def f():\n    return 1\n```\nThis returns one.", "def f():\n    return 1\n"),
        ("def f():\n    return 1", "def f():\n    return 1\n"),  # cut by max_new_tokens
        ("```python\nimport os\n```\n```python\nx = 2\n```", "import os\n"),  # first block only
        ("x = '```'\n   ```\nmore", "x = '```'\n"),  # a fence inside a line is code
        ("```\n```", "\n"),
        ("", "\n"),
    ],
)
def test_first_code_block(answer, code):
    assert chat.first_code_block(answer) == code


def test_whole_program_samples_run_without_the_prompt(tmp_path):
    problem = {
        "task_id": "t/0",
        "prompt": "def add(a, b):\n    raise SystemExit(1)  # a prompt that must not run\n",
        "entry_point": "add",
        "test": "def check(f):\n    assert f(2, 3) == 5\n",
        "canonical_solution": "",
    }
    jsonl.write_jsonl(tmp_path / "problems.jsonl", [problem])
    code = "def add(a, b):\n    return a + b\n"
    jsonl.write_jsonl(
        tmp_path / "samples.jsonl",
        [
            {"task_id": "t/0", "completion": code, "whole_program": True},
            {"task_id": "t/0", "completion": "    return a - b\n"},  # a completion: prompt first
        ],
    )
    correctness.evaluate_functional_correctness(
        str(tmp_path / "samples.jsonl"), k=(1,), problem_file=str(tmp_path / "problems.jsonl")
    )
    rows = jsonl.read_jsonl(str(tmp_path / "samples.jsonl_results.jsonl"))
    assert [r["passed"] for r in rows] == [True, False]


def test_chat_samples_of_an_instruct_model_equal_generate(instruct_model, tmp_path):
    directory, hf_model, theirs = instruct_model
    jsonl.write_jsonl(
        tmp_path / "problems.jsonl",
        [{"task_id": "t/0", "prompt": TASK_PROMPT, "entry_point": "add", "test": ""}],
    )
    config = tiny.get_config()
    config.sample.update(n=1, temperature=0.0, max_new_tokens=16, batch_size=2)
    config.sample.prompt_format = "chat"
    config.eval.problem_file = str(tmp_path / "problems.jsonl")
    path = samples.ensure_samples(config, tmp_path, hf_checkpoint=str(directory))
    assert path.endswith("hf_chat.jsonl")
    [record] = jsonl.read_jsonl(path)
    # transformers' apply_chat_template(tokenize=True): the rendered text, no special tokens added.
    ids = theirs(evalplus_prompt(theirs, TASK_PROMPT), add_special_tokens=False).input_ids
    with torch.no_grad():
        out = hf_model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=16,
            pad_token_id=EOD,
        )
    expected = out[0, len(ids) :].tolist()
    expected = expected[: expected.index(EOD)] if EOD in expected else expected
    text = theirs.decode(expected)
    text = text[: text.index("\n```")] if "\n```" in text else text
    assert record["response"] == text and record["whole_program"] is True
    assert record["completion"] == chat.first_code_block(text)
