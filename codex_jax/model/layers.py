"""The GPT's building blocks that hold no config: projections (and their out-first layout for
CPU decoding), parameter initialisers with logical axis names, rotary positions, and attention
over a KV cache. `codex_jax.model.transformer` assembles them into the model."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

# Each projection's einsum, by its parameter name: input axes, kernel axes -> output axes.
PROJECTIONS = {
    "qkv": "BTD,DSHK->BTSHK",  # S: query, key, value
    "q": "BTD,DHK->BTHK",
    "kv": "BTD,DSNK->BTSNK",  # S: key, value
    "out": "BTHK,HKD->BTD",
    "fc": "BTD,DF->BTF",  # the MLP's input layer (SwiGLU's "up")
    "gate": "BTD,DF->BTF",  # SwiGLU's gate
    "proj": "BTF,FD->BTD",
    "head": "BTD,DV->BTV",  # the output layer when not tied to the embedding
}


def out_first_order(equation: str) -> tuple[int, ...]:
    """The kernel's axes in `equation`, output axes first: "BTD,DF->BTF" gives (1, 0)."""
    inputs, kernel = equation.split("->")[0].split(",")
    return tuple(sorted(range(len(kernel)), key=lambda axis: kernel[axis] in inputs))


def project(equation: str, x: jax.Array, kernel: jax.Array, out_first: bool) -> jax.Array:
    """einsum(equation, x, kernel); with `out_first`, `kernel` is stored output axes first
    (`out_first_order`) and is the left operand of the matmul.

    Out-first is for decoding on CPU, where each step multiplies a few rows by every weight
    matrix: XLA:CPU's matmul library then reads the weights as stored instead of repacking each
    matrix on every call (see `codex_jax.sampling.GPTDecoder` for what that gains). The barrier
    keeps XLA from swapping the operands back.
    """
    if not out_first:
        return jnp.einsum(equation, x, kernel)
    inputs, output = equation.split("->")
    x_axes, kernel_axes = inputs.split(",")
    kernel_axes = "".join(kernel_axes[axis] for axis in out_first_order(equation))
    kernel_out = "".join(a for a in kernel_axes if a not in x_axes)
    x_free = "".join(a for a in x_axes if a not in kernel_axes)
    y = jax.lax.optimization_barrier(
        jnp.einsum(f"{kernel_axes},{x_axes}->{kernel_out}{x_free}", kernel, x)
    )
    return jnp.einsum(f"{kernel_out}{x_free}->{output}", y)


def kernels_out_first(params: Any) -> Any:
    """GPT parameters with every projection kernel (and an untied output layer) stored output
    axes first, as a model with `out_first_kernels` takes them."""
    flat = traverse_util.flatten_dict(params)
    for path, value in flat.items():
        if path[-1] in ("kernel", "head"):  # a projection's kernel is its module's "kernel"
            name = path[-2] if path[-1] == "kernel" else "head"
            flat[path] = jnp.transpose(value, out_first_order(PROJECTIONS[name]))
    return traverse_util.unflatten_dict(flat)


def normal_init(stddev: float, axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


def kernel_param(
    module: nn.Module,
    name: str,
    equation: str,
    shape: tuple[int, ...],
    axes: tuple[str | None, ...],
    stddev: float,
    out_first: bool,
) -> jax.Array:
    """A float32 kernel parameter of `shape` and `axes` in `equation`'s order, stored output axes
    first when `out_first` (see `project`)."""
    order = out_first_order(equation) if out_first else range(len(shape))
    return module.param(
        name,
        normal_init(stddev, tuple(axes[a] for a in order)),
        tuple(shape[a] for a in order),
        jnp.float32,
    )


def zeros_init(axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


class Projection(nn.Module):
    """einsum(PROJECTIONS[name], x, kernel) + bias, with float32 parameters named by logical axes.

    `kernel_shape` and `kernel_axes` are in the equation's order (stored output axes first with
    `out_first`, see `project`); the bias has the kernel's trailing `len(bias_axes)` dimensions
    there (the output features); `use_bias=False` leaves it out.
    """

    kernel_shape: tuple[int, ...]
    kernel_axes: tuple[str | None, ...]
    bias_axes: tuple[str | None, ...]
    stddev: float
    dtype: jnp.dtype
    out_first: bool = False
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        equation = PROJECTIONS[self.name]
        kernel = kernel_param(
            self,
            "kernel",
            equation,
            self.kernel_shape,
            self.kernel_axes,
            self.stddev,
            self.out_first,
        )
        y = project(equation, x.astype(self.dtype), kernel.astype(self.dtype), self.out_first)
        if not self.use_bias:
            return y
        bias = self.param(
            "bias",
            zeros_init(self.bias_axes),
            self.kernel_shape[-len(self.bias_axes) :],
            jnp.float32,
        )
        return y + bias.astype(self.dtype)


def rotary_frequencies(
    rotated: int, base: float = 10_000.0, scaling: tuple[Any, ...] = ()
) -> jax.Array:
    """The R/2 angular frequencies of rotary positions over `rotated` = R dimensions per head.

    `scaling` (a checkpoint's rope scaling): () none; ("linear", factor) divides every frequency
    by factor; ("llama3", factor, low_freq_factor, high_freq_factor, original_max_len) divides
    the low ones (wavelength > original_max_len / low_freq_factor) by factor, keeps the high ones
    (wavelength < original_max_len / high_freq_factor) and interpolates between (Llama 3.1).
    """
    half = rotated // 2
    inv_freq = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))  # (R/2,)
    if not scaling:
        return inv_freq
    kind, factor = scaling[0], float(scaling[1])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high, original = (float(v) for v in scaling[2:5])
        wavelength = 2 * math.pi / inv_freq
        smooth = (original / wavelength - low) / (high - low)
        mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = jnp.where(wavelength > original / low, inv_freq / factor, inv_freq)
        middle = (wavelength <= original / low) & (wavelength >= original / high)
        return jnp.where(middle, mixed, scaled)
    raise ValueError(f"rotary scaling {kind!r}: expected 'linear' or 'llama3'")


def rotary(
    x: jax.Array, positions: jax.Array, inv_freq: jax.Array, fraction: float = 1.0
) -> jax.Array:
    """Rotary position embedding (RoFormer) of x [B, T, H, K] at positions int32[B, T].

    Rotates the first R = int(K * fraction) dimensions of each head by `inv_freq` (R/2,
    `rotary_frequencies`), pairing dimension i with i + R/2 (GPT-NeoX's and Llama's
    rotate_half); the others pass unchanged.
    """
    rotated = int(x.shape[-1] * fraction)
    half = rotated // 2
    angles = positions[:, :, None, None].astype(jnp.float32) * inv_freq  # (B, T, 1, R/2)
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    x1, x2, rest = jnp.split(x.astype(jnp.float32), [half, rotated], axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], axis=-1).astype(
        x.dtype
    )


def cached_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention of q [B, T, H, K] over a cache k, v [B, N, S, K] where mask bool[B|1, 1, T, S].

    The decode path: plain einsums over the cache's [B, N, S, K] layout with a float32 softmax,
    several times faster on XLA:CPU than `jax.nn.dot_product_attention`, which transposes the
    whole cache for every query token. A row whose slots are all masked (a padding query)
    gets a uniform average, finite like the rest.
    """
    batch, length, heads, head_dim = q.shape
    q = q.reshape(batch, length, k.shape[1], heads // k.shape[1], head_dim)  # (B, T, N, G, K)
    scores = jnp.einsum(
        "BTNGK,BNSK->BNGTS", q, k.astype(q.dtype), preferred_element_type=jnp.float32
    ) / math.sqrt(head_dim)  # (B, N, G, T, S)
    scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    y = jnp.einsum("BNGTS,BNSK->BTNGK", weights, v.astype(q.dtype))  # (B, T, N, G, K)
    return y.reshape(batch, length, heads, head_dim)
