"""Model-merging formulas, one tensor at a time (pure functions on torch tensors; computed in float32).

Notation: base tensor W, input tensors W_i, task vectors d_i = W_i - W, weights w_i > 0.

- linear: sum_i w_i W_i / sum_i w_i (a weighted average).
- slerp: spherical interpolation between exactly two tensors at t in [0, 1] (t=0 gives the first);
  linear interpolation when they are nearly collinear (|cos| > DOT_THRESHOLD) or one is zero.
- ties (Yadav et al. 2023): trim each d_i to its `density` fraction of largest magnitudes, elect a sign per
  element (the sign of sum_i w_i trim(d_i), zero counting as +), then take the weighted mean over the inputs
  whose trimmed value has the elected sign (disjoint mean); W + that.
- dare_linear (Yu et al. 2023): drop each element of d_i with probability p = 1 - density and rescale the kept
  ones by 1/(1-p), so the expectation is d_i; then W + sum_i w_i drop(d_i) / sum_i w_i.
- dare_ties: DARE's drop in place of TIES' trim, then TIES' sign election and disjoint mean.

Every method is normalized by the weights, so merged tensors stay on the inputs' scale.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

METHODS = ("linear", "slerp", "ties", "dare_ties", "dare_linear")
DTYPES = ("bf16", "fp16", "fp32")  # what `merge` loads and saves an adapter's base in
DENSITY_METHODS = ("ties", "dare_ties", "dare_linear")
DOT_THRESHOLD = 0.9995
EPS = 1e-8


def _weights(count: int, weights: Sequence[float] | None) -> list[float]:
    if count == 0:
        raise ValueError("no tensors to merge")
    w = [1.0] * count if weights is None else [float(x) for x in weights]
    if len(w) != count:
        raise ValueError(f"{len(w)} weights for {count} tensors")
    if not all(math.isfinite(x) and x > 0 for x in w):
        raise ValueError(f"weights must be positive numbers, got {w}")
    return w


def _check_density(density: float) -> None:
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")


def linear(tensors: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted average sum_i w_i t_i / sum_i w_i (equal weights by default)."""
    import torch

    w = _weights(len(tensors), weights)
    total = sum(w)
    out = torch.zeros(tensors[0].shape, dtype=torch.float32)
    for wi, t in zip(w, tensors, strict=True):
        out.add_(t.to(torch.float32), alpha=wi / total)
    return out


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    """Spherical interpolation from `a` (t=0) to `b` (t=1), the tensors seen as flat vectors.

    sin((1-t)θ)/sin θ · a + sin(tθ)/sin θ · b with cos θ = <a, b> / (|a| |b|); falls back to
    (1-t) a + t b when |cos θ| > `dot_threshold` (nearly collinear) or either vector is zero.
    """
    import torch

    if not 0 <= t <= 1:
        raise ValueError(f"slerp t must be in [0, 1], got {t}")
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    na, nb = torch.linalg.vector_norm(a32).item(), torch.linalg.vector_norm(b32).item()
    if na > EPS and nb > EPS:
        cos = max(-1.0, min(1.0, torch.dot(a32.flatten(), b32.flatten()).item() / (na * nb)))
        if abs(cos) <= dot_threshold:
            theta = math.acos(cos)
            sin_theta = math.sin(theta)
            s0, s1 = math.sin((1 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta
            return a32 * s0 + b32 * s1
    return a32 * (1 - t) + b32 * t


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the round(density * n) largest-magnitude elements, zero the rest (ties at the cut are all kept)."""
    import torch

    _check_density(density)
    d = delta.to(torch.float32)
    n = d.numel()
    k = round(density * n)
    if k >= n:
        return d.clone()
    if k <= 0:
        return torch.zeros_like(d)
    magnitude = d.abs()
    threshold = magnitude.flatten().kthvalue(n - k + 1).values  # the k-th largest magnitude
    return magnitude.ge_(threshold).mul_(d)  # 1.0 where kept, times d (in place: no further copy)


def elect_sign(deltas: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Per element +1 or -1: the sign of sum_i w_i d_i (a zero sum counts as +1)."""
    total = linear(deltas, weights)  # same sign as the weighted sum (weights are positive)
    return total.ge_(0).mul_(2).sub_(1)  # 1.0 / 0.0 -> +1 / -1, in place


def disjoint_mean(deltas: Sequence[torch.Tensor], weights: Sequence[float] | None, sign: torch.Tensor,
                  ) -> torch.Tensor:
    """Per element, sum_i w_i d_i / sum_i w_i over the inputs whose d_i is non-zero with the elected `sign`;
    0 where none agrees."""
    import torch

    w = _weights(len(deltas), weights)
    num = torch.zeros(sign.shape, dtype=torch.float32)
    den = torch.zeros(sign.shape, dtype=torch.float32)
    for wi, d in zip(w, deltas, strict=True):
        d32 = d.to(torch.float32)
        agree = torch.sign(d32).eq_(sign)  # 1.0 where the signs match; sign(0) = 0 never matches
        num.addcmul_(d32, agree, value=wi)
        den.add_(agree, alpha=wi)
        del agree
    return num.div_(den.masked_fill_(den == 0, 1.0))


def ties(deltas: Iterable[torch.Tensor], weights: Sequence[float] | None = None, density: float = 1.0,
         ) -> torch.Tensor:
    """TIES merge of task vectors: trim, elect sign, disjoint mean (returns the merged task vector).

    `deltas` may be a generator: each task vector is trimmed as it comes, so only the trimmed ones are kept.
    """
    trimmed = [trim(d, density) for d in deltas]
    return disjoint_mean(trimmed, weights, elect_sign(trimmed, weights))


def dare_drop(delta: torch.Tensor, density: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep each element with probability `density` (drop with p = 1 - density), rescale kept ones by 1/(1-p)."""
    import torch

    _check_density(density)
    d = delta.to(torch.float32)
    if density >= 1:
        return d.clone()
    keep = torch.rand(d.shape, generator=generator).lt_(density)  # 1.0 kept, 0.0 dropped
    return keep.mul_(d).div_(density)


def dare_linear(deltas: Iterable[torch.Tensor], weights: Sequence[float] | None = None, density: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE then a weighted average of the task vectors (returns the merged task vector)."""
    return linear([dare_drop(d, density, generator) for d in deltas], weights)


def dare_ties(deltas: Iterable[torch.Tensor], weights: Sequence[float] | None = None, density: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE's random drop, then TIES' sign election and disjoint mean (returns the merged task vector)."""
    dropped = [dare_drop(d, density, generator) for d in deltas]
    return disjoint_mean(dropped, weights, elect_sign(dropped, weights))


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded from the merge seed and the tensor's name, so DARE's drop of one tensor does not
    depend on which tensors came before it (and an adapter merge drops like the equivalent full-model merge)."""
    import torch

    return torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63))


def merge_tensor(method: str, base: torch.Tensor, inputs: Sequence[torch.Tensor], *,
                 weights: Sequence[float] | None = None, density: float = 1.0, seed: int = 0, name: str = "",
                 ) -> torch.Tensor:
    """One merged tensor from the base tensor and the inputs' tensors, in the base's dtype.

    `weights` is the interpolation factor [t] for slerp. Non-float tensors (integer buffers) are the base's.
    """
    import torch

    if not base.is_floating_point():
        return base.clone()
    if method == "linear":
        out = linear(inputs, weights)
    elif method == "slerp":
        if len(inputs) != 2:
            raise ValueError("slerp merges exactly two tensors")
        out = slerp(inputs[0], inputs[1], float(weights[0]) if weights else 0.5)
    elif method in DENSITY_METHODS:
        w = base.to(torch.float32)
        deltas = (t.to(torch.float32) - w for t in inputs)  # one at a time: each is trimmed or dropped as made
        if method == "ties":
            out = ties(deltas, weights, density)
        elif method == "dare_linear":
            out = dare_linear(deltas, weights, density, tensor_generator(seed, name))
        else:
            out = dare_ties(deltas, weights, density, tensor_generator(seed, name))
        out.add_(w)
    else:
        raise ValueError(f"unknown merge method {method!r} (one of {', '.join(METHODS)})")
    return out.to(base.dtype)
