"""Instruct models' prompts (`config.sample.prompt_format = "chat"`), as evalplus asks them.

evalplus's instruct convention (evalplus/provider/utility.py, `make_raw_chat_prompt`): the user
turn asks for a self-contained script in a markdown code block and quotes the task's prompt in
one; the assistant turn is begun for the model with a sentence and an opened ```python block,
so the model writes code straight away. The conversation is rendered with the checkpoint's own
chat template, and the text up to the assistant's code is the prompt:

    <template's user turn>Please provide a self-contained Python script that solves the
    following problem in a markdown code block:
    ```
    {task prompt, stripped}
    ```
    <template's assistant turn>Below is a Python script with a self-contained function that
    solves the problem and passes corresponding tests:
    ```python
    <- the model continues here

The completion is cut at the block's closing fence (`STOPS`) or the end of the turn, and its
first code block (`first_code_block`) is scored as a whole program: the task's prompt is not
put in front of it (evalplus then also "sanitizes" the code with an AST pass, which is not done
here: a completion that is not valid Python fails).
"""

INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem in a "
    "markdown code block:"
)
RESPONSE = (
    "Below is a Python script with a self-contained function that solves the problem and "
    "passes corresponding tests:"
)
SPLITTER = "-[[]]-this-is-really-our-highest-priority-[[]]-"  # evalplus's: cut the template here
STOPS = ("\n```",)
FENCE = "```"


def prompt(tokenizer, task_prompt: str) -> str:
    """The chat prompt of one task's prompt, rendered by `tokenizer.apply_chat_template`.

    Raises:
        ValueError: the tokenizer has no chat template (the project's own models).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "config.sample.prompt_format = 'chat' needs a checkpoint with a chat template "
            "(an imported instruct model); this one has none: use 'completion'"
        )
    user = f"{INSTRUCTION}\n{FENCE}\n{task_prompt.strip()}\n{FENCE}\n"
    assistant = f"{RESPONSE}\n{FENCE}python\n{SPLITTER}\n{FENCE}\n"
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    if SPLITTER not in rendered:
        raise ValueError("the chat template dropped the assistant's turn; cannot begin its answer")
    return rendered.split(SPLITTER)[0]


def first_code_block(completion: str) -> str:
    """The code of the block the prompt opened: the completion up to the first line that starts
    with a fence. A completion that itself opens with a fence line (```python) is read from the
    line after it; one without a closing fence (cut by max_new_tokens) is taken whole."""
    lines = completion.split("\n")
    if lines and lines[0].strip().startswith(FENCE):
        lines = lines[1:]
    for i, line in enumerate(lines):
        if line.lstrip().startswith(FENCE):
            lines = lines[:i]
            break
    return "\n".join(lines).rstrip() + "\n"
