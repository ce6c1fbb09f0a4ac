"""Levin, Lischinski & Weiss, "Colorization using Optimization" (SIGGRAPH 2004): the `levin`
reference of every evaluation.

Neighbouring pixels of similar intensity should get similar colours: each free pixel's colour
is the weighted mean of its 3x3 neighbours', w_rs = exp(-(Y_r - Y_s)^2 / (2 sigma_r^2)) (sigma_r
from the local variance, as in the authors' code: :func:`levin_weights`), and hinted pixels keep
their hint colour. That is one sparse linear system per image and hint set,
``A u = b``, with A = I - W on free rows and identity rows at the hints; a and b share A.

The evaluation solves 490 images x 9 hint counts of 256x256 systems, where scipy's direct
solve takes 0.3-0.8 s each. :func:`levin_colorize` solves them batched on torch tensors with
BiCGSTAB (A is not symmetric: rows are normalised per pixel) preconditioned by an aggregation
multigrid V-cycle: A is kept as a 9-point stencil (N, 9, H, W), 2x2 blocks of pixels are
aggregated with piecewise-constant P and R = P^T, which keeps the Galerkin coarse operator a
3x3 stencil, so every level is the same cheap stencil arithmetic; the coarsest level (<= 16x16)
is solved densely. Each system's final residual is checked; any that did not converge is solved
again by :func:`levin_direct` (scipy), with a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

from hintcolor.data.color import L_CENTER, L_SCALE

log = logging.getLogger(__name__)

# The 3x3 neighbourhood as (dy, dx), row-major; index 4 is the pixel itself.
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
CENTRE = 4
# 2 sigma_r^2 = VAR_SCALE x the window's variance of Y (in [0, 1]), floored at VAR_FLOOR, as in
# Levin et al.'s released code: in flat regions all neighbours weigh about the same.
VAR_SCALE = 0.6
VAR_FLOOR = 2e-6
# Relative residual ||b - A u|| / ||b|| at which the float32 iteration stops. At 1e-4 the
# colours differ from scipy's float64 direct solve by a PSNR of ~60 dB (max |d ab| ~1e-2,
# mean ~1e-4 on 256x256 photos), which moves an image's PSNR against its truth (~25 dB) by
# < 0.005 dB; 1e-5 costs 1.5x the iterations. Tests compare at tighter tolerances.
TOL = 1e-4
MAX_ITER = 50
COARSEST = 16  # sides at or below this are solved densely
JACOBI_OMEGA = 1.0
# Piecewise-constant aggregates make the coarse correction too small (by about half on
# Laplacian-like operators); over-correcting by 1.5 cut BiCGSTAB's iterations from 11 to 7.
COARSE_SCALE = 1.5


def _shifted(x: Tensor, dy: int, dx: int) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, zero outside the image."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def levin_weights(luma: Tensor) -> Tensor:
    """Row-normalised affinities (B,9,H,W) of each pixel to its 3x3 neighbours.

    ``luma`` is (B,1,H,W) in [0, 1]. Entry o of pixel r is w_rs for s = r + OFFSETS[o];
    the centre entry and neighbours outside the image are 0, and each row sums to 1.
    w_rs = exp(-(Y_r - Y_s)^2 / (2 sigma_r^2)) with 2 sigma_r^2 as in the authors' released
    code (getColorExact.m): 0.6 x the variance of Y over r's 3x3 window, raised so that the most
    similar neighbour weighs at least 0.01, floored at VAR_FLOOR. (Read literally, the paper's
    sigma_r^2 = variance gives any clean step edge a cross weight of exp(-9/4) ~ 0.1 whatever
    its contrast, and colours leak through every edge.) Normalised with a softmax, which is the
    same as dividing by the row sum but cannot underflow to 0/0.
    """
    y = luma[:, 0]
    inside = torch.stack([_shifted(torch.ones_like(y[:1]), dy, dx) for dy, dx in OFFSETS], 1)
    neigh = torch.stack([_shifted(y, dy, dx) for dy, dx in OFFSETS], dim=1)  # (B,9,H,W)
    count = inside.sum(dim=1)
    mean = (neigh * inside).sum(dim=1) / count
    var = ((neigh - mean[:, None]).pow(2) * inside).sum(dim=1) / count
    neighbour = inside.bool().expand_as(neigh).clone()
    neighbour[:, CENTRE] = False
    dist2 = (neigh - y[:, None]).pow(2)
    nearest = dist2.masked_fill(~neighbour, float("inf")).amin(dim=1)
    two_sigma2 = torch.maximum(VAR_SCALE * var, nearest / math.log(100.0))
    two_sigma2 = two_sigma2.nan_to_num(VAR_FLOOR, posinf=VAR_FLOOR).clamp_min(VAR_FLOOR)
    logits = (-dist2 / two_sigma2[:, None]).masked_fill(~neighbour, float("-inf"))
    return torch.softmax(logits, dim=1).nan_to_num(0.0)  # a 1x1 image has no neighbours


def luma_from_l(l_norm: Tensor) -> Tensor:
    """The repo's normalised L ((L - 50) / 100, in [-0.5, 0.5]) -> Y = L / 100 in [0, 1]."""
    return (l_norm * L_SCALE + L_CENTER) / 100.0


def levin_stencil(weights: Tensor, mask: Tensor) -> Tensor:
    """A as a stencil (N,9,H,W): I - W on free rows, identity rows where ``mask`` is 1."""
    stencil = -weights * (1 - mask)
    stencil[:, CENTRE] = 1.0
    return stencil


def apply_stencil(stencil: Tensor, u: Tensor) -> Tensor:
    """A u for a stencil (N,9,H,W) and u (N,C,H,W): every channel with the same A."""
    out = stencil[:, CENTRE : CENTRE + 1] * u
    padded = F.pad(u, (1, 1, 1, 1))
    h, w = u.shape[-2:]
    for o, (dy, dx) in enumerate(OFFSETS):
        if o != CENTRE:
            out.addcmul_(
                stencil[:, o : o + 1], padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            )
    return out


# ---- aggregation multigrid ------------------------------------------------------------------


@dataclass
class Level:
    """One grid: its operator, damped Jacobi's omega / diag, which cells are real (None: all),
    or, on the coarsest grid, the LU factors of the dense operator."""

    stencil: Tensor
    jacobi: Tensor
    valid: Tensor | None
    lu: tuple[Tensor, Tensor] | None = None


def _coarsen(stencil: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Galerkin operator R A P for 2x2 piecewise-constant aggregates, again a 3x3 stencil.

    A_c[I, J] = sum of A[i, j] over i in block I and j in block J; fine pixel (2Y+a, 2X+b)'s
    entry at offset (dy, dx) lands at coarse offset ((a+dy)//2, (b+dx)//2). Padding pixels
    belong to no aggregate; a block of padding only gets an identity row.
    """
    n, _, h, w = stencil.shape
    if valid is not None:
        stencil = stencil * valid
    blocks = stencil.reshape(n, 9, h // 2, 2, w // 2, 2)
    coarse = stencil.new_zeros(n, 9, h // 2, w // 2)
    for o, (dy, dx) in enumerate(OFFSETS):
        for a in (0, 1):
            for b in (0, 1):
                co = ((a + dy) // 2 + 1) * 3 + (b + dx) // 2 + 1
                coarse[:, co] += blocks[:, o, :, a, :, b]
    if valid is None:
        return coarse, None
    valid = F.max_pool2d(valid, 2)
    coarse[:, CENTRE] += 1 - valid[:, 0]
    return coarse, valid


def _dense(stencil: Tensor) -> Tensor:
    """The stencil's matrix (N, HW, HW), for the coarsest grid."""
    n, _, h, w = stencil.shape
    matrix = stencil.new_zeros(n, h * w, h * w)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for o, (dy, dx) in enumerate(OFFSETS):
        ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        rows = (ys * w + xs)[ok]
        cols = ((ys + dy) * w + xs + dx)[ok]
        matrix[:, rows, cols] = stencil[:, o][:, ok.to(stencil.device)]
    return matrix


def build_hierarchy(stencil: Tensor, valid: Tensor | None) -> list[Level]:
    """Coarsen until a side is odd or <= COARSEST; that grid is factorised densely (float64:
    it carries the global, weakly coupled modes that smoothing cannot reach)."""
    levels = []
    while True:
        h, w = stencil.shape[-2:]
        diag = stencil[:, CENTRE : CENTRE + 1]
        # an aggregate whose pixels couple only among themselves can have a ~0 diagonal:
        # no smoothing there, the coarser grids and the Krylov iteration take care of it
        jacobi = torch.where(diag.abs() > 1e-6, JACOBI_OMEGA / diag, torch.zeros_like(diag))
        if max(h, w) <= COARSEST or h % 2 or w % 2:
            matrix = _dense(stencil.double())
            # tiny shift: a region decoupled from every hint keeps the factorisation finite
            matrix += 1e-10 * torch.eye(h * w, dtype=matrix.dtype, device=matrix.device)
            levels.append(Level(stencil, jacobi, valid, torch.linalg.lu_factor(matrix)))
            return levels
        levels.append(Level(stencil, jacobi, valid))
        stencil, valid = _coarsen(stencil, valid)


def v_cycle(levels: list[Level], r: Tensor, depth: int = 0) -> Tensor:
    """Approximately A^{-1} r: one damped Jacobi sweep, the coarse-grid correction scaled by
    COARSE_SCALE, one more sweep. A linear operator, so plain BiCGSTAB can use it."""
    level = levels[depth]
    if level.lu is not None:
        n, c, h, w = r.shape
        rhs = r.double().reshape(n, c, h * w).transpose(1, 2)
        u = torch.linalg.lu_solve(*level.lu, rhs)
        return u.transpose(1, 2).reshape(n, c, h, w).to(r.dtype)
    u = level.jacobi * r
    coarse_r = F.avg_pool2d(r - apply_stencil(level.stencil, u), 2) * 4  # R = P^T: block sums
    coarse_u = v_cycle(levels, coarse_r, depth + 1) * COARSE_SCALE
    correction = F.interpolate(coarse_u, scale_factor=2.0, mode="nearest")  # P: copy to block
    u += correction if level.valid is None else correction * level.valid
    u.addcmul_(level.jacobi, r - apply_stencil(level.stencil, u))
    return u


# ---- Krylov solver --------------------------------------------------------------------------


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """Per system and channel: (N,C,H,W) x (N,C,H,W) -> (N,C,1,1)."""
    return (x * y).sum(dim=(-2, -1), keepdim=True)


def _div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den is 0 (a converged or broken-down system stops moving)."""
    safe = torch.where(den != 0, den, torch.ones_like(den))
    return torch.where(den != 0, num / safe, torch.zeros_like(num))


def bicgstab(
    stencil: Tensor, levels: list[Level], b: Tensor, x: Tensor, tol: float, max_iter: int
) -> tuple[Tensor, int]:
    """Right-preconditioned BiCGSTAB on every (system, channel) at once, each with its own
    scalars; one that has converged is frozen (its step sizes are 0) while the others go on.
    Returns x and the iterations run."""
    b_norm = _dot(b, b).sqrt().clamp_min(1e-30)
    r = b - apply_stencil(stencil, x)
    r_hat = r.clone()
    p = torch.zeros_like(r)
    v = torch.zeros_like(r)
    rho = alpha = omega = torch.ones_like(b_norm)
    for it in range(max_iter):
        active = (_dot(r, r).sqrt() > tol * b_norm).to(r.dtype)
        if not bool(active.any()):
            return x, it
        rho_new = _dot(r_hat, r)
        beta = _div(rho_new, rho) * _div(alpha, omega)
        p = r + beta * (p - omega * v)
        p_hat = v_cycle(levels, p)
        v = apply_stencil(stencil, p_hat)
        alpha = _div(rho_new, _dot(r_hat, v)) * active
        s = r - alpha * v
        s_hat = v_cycle(levels, s)
        t = apply_stencil(stencil, s_hat)
        omega = _div(_dot(t, s), _dot(t, t)) * active
        x = x + alpha * p_hat + omega * s_hat
        r = s - omega * t
        rho = rho_new
    return x, max_iter


# ---- the method -----------------------------------------------------------------------------


def _padded(x: Tensor, h: int, w: int, centre: float = 0.0) -> Tensor:
    """Zero-pad (..., H, W) at the bottom and right to (h, w); a stencil's padding rows get
    ``centre`` on the diagonal (identity rows: decoupled unknowns that stay 0)."""
    out = F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]))
    if centre:
        out[:, CENTRE, x.shape[-2] :, :] = centre
        out[:, CENTRE, :, x.shape[-1] :] = centre
    return out


def _grid_size(h: int, w: int) -> tuple[int, int]:
    """The padded size: a multiple of 2^levels, levels enough to bring the longer side to
    <= COARSEST (256x256 stays 256x256: 5 levels down to 16x16)."""
    levels = 0
    while max(h, w) > COARSEST * 2**levels:
        levels += 1
    step = 2**levels
    return -(-h // step) * step, -(-w // step) * step


def relative_residual(stencil: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """||b - A x|| / ||b|| per system, both channels together, (N,)."""
    r = b - apply_stencil(stencil, x)
    return r.pow(2).flatten(1).sum(1).sqrt() / b.pow(2).flatten(1).sum(1).sqrt().clamp_min(1e-30)


stats = {"systems": 0, "iterations": 0, "fallbacks": 0}


def levin_colorize(
    l_norm: Tensor,
    hint_ab: Tensor,
    mask: Tensor,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    weights: Tensor | None = None,
) -> Tensor:
    """Levin et al.'s colours (N,2,H,W), normalised ab, for a batch of hint sets.

    ``l_norm`` (N,1,H,W) is the repo's normalised L, ``hint_ab`` (N,2,H,W) and ``mask``
    (N,1,H,W) the hints as the models get them; ``weights`` (N,9,H,W), when given, are
    :func:`levin_weights` of the images (the same for every hint count of an image). Iterates
    until ||b - A u|| / ||b|| <= ``tol`` per system and channel, from the push-pull fill of the
    hints; a system whose final residual is above 10 ``tol`` (or not finite) is solved by
    :func:`levin_direct` instead, with a warning. No hints: ab = 0.
    """
    # One system at a time on a CPU: BiCGSTAB runs until the slowest system of a call has
    # converged, and one 256x256 system's vectors stay in cache (measured, 1 thread: 53 ms per
    # system one by one, 71 ms in batches of 8). A GPU wants them all at once.
    n = len(hint_ab)
    step = max(n, 1) if hint_ab.is_cuda else 1
    parts = [
        _solve(
            l_norm[i : i + step],
            hint_ab[i : i + step],
            mask[i : i + step],
            tol,
            max_iter,
            None if weights is None else weights[i : i + step],
        )
        for i in range(0, n, step)
    ]
    return torch.cat(parts) if parts else hint_ab.new_zeros(0, 2, *hint_ab.shape[-2:])


def _solve(
    l_norm: Tensor,
    hint_ab: Tensor,
    mask: Tensor,
    tol: float,
    max_iter: int,
    weights: Tensor | None,
) -> Tensor:
    """:func:`levin_colorize` of a batch solved together."""
    from hintcolor.models.hint_prior import push_pull

    n, _, h, w = hint_ab.shape
    out = torch.zeros(n, 2, h, w, device=hint_ab.device)
    hinted = mask.flatten(1).amax(dim=1) > 0
    if not bool(hinted.any()):
        return out
    idx = hinted.nonzero()[:, 0]
    if weights is None:
        weights = levin_weights(luma_from_l(l_norm[idx].double())).float()
    else:
        weights = weights[idx].float()
    m = mask[idx].float()
    stencil = levin_stencil(weights, m)
    b = hint_ab[idx].float() * m
    x0 = push_pull(hint_ab[idx], m)

    gh, gw = _grid_size(h, w)
    valid = None
    if (gh, gw) != (h, w):
        valid = _padded(torch.ones(1, 1, h, w, device=b.device), gh, gw)
    levels = build_hierarchy(_padded(stencil, gh, gw, centre=1.0), valid)
    x, iterations = bicgstab(
        levels[0].stencil, levels, _padded(b, gh, gw), _padded(x0, gh, gw), tol, max_iter
    )
    x = x[..., :h, :w]

    residual = relative_residual(stencil, b, x)
    failed = ~(residual <= 10 * tol)
    stats["systems"] += len(idx)
    stats["iterations"] += iterations * len(idx)
    if bool(failed.any()):
        stats["fallbacks"] += int(failed.sum())
        log.warning(
            f"levin: {int(failed.sum())} of {len(idx)} systems did not converge in {max_iter} "
            f"iterations (relative residual up to {float(residual[failed].max()):.1e}); "
            "solved directly"
        )
        j = idx[failed]
        x[failed] = levin_direct(l_norm[j], hint_ab[j], mask[j]).to(x)
    out[idx] = x
    return out


# ---- direct reference -----------------------------------------------------------------------


def levin_matrix(weights: Tensor, mask: Tensor) -> scipy.sparse.csr_matrix:
    """One image's A (HW x HW) as a scipy sparse matrix, from (9,H,W) weights and (1,H,W) mask."""
    stencil = levin_stencil(weights[None].double(), mask[None].double())[0].cpu().numpy()
    h, w = stencil.shape[-2:]
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    rows, cols, vals = [], [], []
    for o, (dy, dx) in enumerate(OFFSETS):
        ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        ok &= stencil[o] != 0
        rows.append((ys * w + xs)[ok])
        cols.append(((ys + dy) * w + xs + dx)[ok])
        vals.append(stencil[o][ok])
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return scipy.sparse.csr_matrix(data, shape=(h * w, h * w))


def levin_direct(l_norm: Tensor, hint_ab: Tensor, mask: Tensor) -> Tensor:
    """The same solution by scipy's sparse direct solver, in float64, one image at a time:
    the reference of the tests and the fallback of :func:`levin_colorize` (0.3-0.8 s per
    256x256 image)."""
    weights = levin_weights(luma_from_l(l_norm.double()))
    out = torch.zeros(hint_ab.shape, dtype=torch.float32)
    for i in range(l_norm.shape[0]):
        if not bool(mask[i].any()):
            continue
        matrix = levin_matrix(weights[i], mask[i])
        rhs = (hint_ab[i] * mask[i]).double().reshape(2, -1).T.cpu().numpy()
        # A is structurally symmetric and diagonally dominant: a symmetric fill-reducing
        # ordering and no pivoting keep SuperLU's factors ~2x smaller than spsolve's default
        # (an evaluation that fell back on many systems once ran out of memory)
        lu = scipy.sparse.linalg.splu(
            matrix.tocsc(),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        u = lu.solve(rhs)
        del lu
        out[i] = torch.from_numpy(np.ascontiguousarray(u.T)).reshape(hint_ab.shape[1:])
    return out.to(hint_ab.device)
