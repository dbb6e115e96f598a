"""Train-step throughput: codex_jax's jitted step against Hugging Face transformers' GPT-2.

    pip install -e '.[bench]'   # the peer: torch and transformers
    python benchmarks/train.py [--batch_size=8] [--repeats=7] [--steps=5]

Both train the same model shape (--config's model, default the tiny 2 x 128; the 1.3x target
was set at 4 x 256: --config.model.n_layers=4 --config.model.d_model=256 --config.model.d_ff=1024;
learned positions, tied embeddings, vocab 8,192, float32, no dropout) on the same random batch of
[B, 256 + 1] tokens: forward, cross-entropy, backward, global-norm clipping and an AdamW
update per step. transformers runs PyTorch eager (SDPA attention, foreach AdamW). The two
contenders alternate within each repeat (the CPU is shared: alternation and medians keep the
comparison fair); each reports median tokens/s over the repeats with the spread (min-max), and
codex_jax's MFU against the measured float32 `jnp.dot` peak of this machine. The ratio comes last.

No XLA flag is set: the YNNPACK elementwise fusion (--xla_cpu_experimental_ynn_fusion_type=eltwise)
made this step slower here (one pinned core: 1.79-1.95 s per step with it, 1.63-1.71 s without;
it materialises broadcast LayerNorm parameters). To compare the contenders without the thread
oversubscription of a shared machine, pin the run: `taskset -c 1 python benchmarks/train.py`.
"""

import os
import statistics
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "tiny.py"),
    "ml_collections config file: the model shape, seq_len and vocabulary size.",
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Sequences per step.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed rounds per contender.")
_STEPS = flags.DEFINE_integer("steps", 5, "Train steps per timed round.")


def jax_contender(config, batch_size: int, tokens):
    """A callable running one codex_jax train step (state carried across calls)."""
    import jax

    from codex_jax.training import trainer

    config.train.batch_size, config.train.grad_accum = batch_size, 1
    config.mesh.update(data=1, fsdp=1, model=1)
    run = trainer.setup(config, config.tokenizer.vocab_size, devices=jax.devices()[:1])
    batch = run.shard_batch({"tokens": tokens})
    state = [run.init()]

    def step():
        state[0], step_metrics = run.train_step(state[0], batch)
        return float(step_metrics["loss"])  # waits for the step

    return step, run


def hf_contender(config, tokens):
    """A callable running one transformers GPT-2 train step in PyTorch eager mode."""
    import torch
    import transformers

    m, t = config.model, config.train
    hf_config = transformers.GPT2Config(
        vocab_size=config.tokenizer.vocab_size,
        n_positions=m.max_len,
        n_embd=m.d_model,
        n_layer=m.n_layers,
        n_head=m.n_heads,
        n_inner=m.d_ff,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=m.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    hf_model = transformers.GPT2LMHeadModel(hf_config).train()
    optimizer = torch.optim.AdamW(
        hf_model.parameters(), lr=t.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=t.weight_decay
    )
    inputs, targets = (
        torch.from_numpy(tokens[:, :-1]).long(),
        torch.from_numpy(tokens[:, 1:]).long(),
    )

    def step():
        logits = hf_model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf_model.parameters(), t.grad_clip)
        optimizer.step()
        return float(loss.detach())

    return step


def _tokens_per_s(step, n_steps: int, tokens_per_step: int) -> float:
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return n_steps * tokens_per_step / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    import jax
    import numpy as np

    from codex_jax.training import metrics

    config = _CONFIG.value
    batch_size, seq_len = _BATCH_SIZE.value, config.train.seq_len
    tokens = np.random.default_rng(0).integers(
        0, config.tokenizer.vocab_size, (batch_size, seq_len + 1), dtype=np.int32
    )
    jax_step, run = jax_contender(config, batch_size, tokens)
    contenders = {
        "codex_jax (jax.jit)": jax_step,
        "transformers GPT-2 (torch eager)": hf_contender(config, tokens),
    }
    for step in contenders.values():  # compile / warm up
        step(), step()
    rates = {name: [] for name in contenders}
    for _ in range(_REPEATS.value):
        for name, step in contenders.items():
            rates[name].append(_tokens_per_s(step, _STEPS.value, batch_size * seq_len))
    peak = metrics.measure_matmul_flops()
    flops_per_token = metrics.flops_per_token(run.gpt.config, seq_len)
    print(
        f"model {config.model.n_layers}x{config.model.d_model}, T={seq_len}, B={batch_size}, "
        f"vocab {config.tokenizer.vocab_size}, float32, {jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} cores; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"measured jnp.dot peak: {peak / 1e9:,.0f} GFLOP/s (float32, 1024^3)")
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"{name:34s} {median:9,.0f} tokens/s  (spread {min(values):,.0f}-{max(values):,.0f}, "
            f"{len(values)} rounds of {_STEPS.value} steps)  MFU {median * flops_per_token / peak:.1%}"
        )
    jax_rate, hf_rate = (statistics.median(values) for values in rates.values())
    print(f"ratio codex_jax / transformers: {jax_rate / hf_rate:.2f}x")


if __name__ == "__main__":
    app.run(main)
