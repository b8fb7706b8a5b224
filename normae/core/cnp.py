"""Closest neighbour patches (CNP): the token each position is paired with in NoR-MAE's second branch.

Tokens are laid out row-major on a ``grid = (H, W)`` of patches; a token's neighbours are the
other cells of its 3x3 window. Three ways to choose the partner are offered:

- ``closest_neighbor_index``: the paper's definition, the most cosine-similar neighbour.
- ``authors_code_source_index``: what the authors' public code actually copies (see
  ``REFERENCE-FACTS.md``): needed to reproduce the numbers of that code exactly.
- ``random_other_index``: a uniformly random other token, a control.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from normae.errors import ConfigError
from normae.spec import CNP_MODES

# The 8 offsets (row, column) of a 3x3 window without its centre, in row-major order.
WINDOW_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def neighbor_table(grid: tuple[int, int], wrap: bool = True) -> torch.Tensor:
    """(L, 8) index of the neighbour at each window offset; -1 where there is none.

    With ``wrap`` the grid is a torus (column 0 neighbours column W-1, as in the authors' code);
    without it, offsets that leave the image have no neighbour. An offset that wraps back onto
    the token itself (a grid side of 1) has no neighbour either.
    """
    height, width = grid
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    own = rows * width + cols
    columns = []
    for dy, dx in WINDOW_OFFSETS:
        r, c = rows + dy, cols + dx
        if wrap:
            r, c = r % height, c % width
            inside = torch.ones_like(r, dtype=torch.bool)
        else:
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        index = torch.where(inside, r * width + c, torch.full_like(r, -1))
        columns.append(torch.where(index == own, torch.full_like(index, -1), index))
    return torch.stack(columns, dim=1)


@functools.lru_cache(maxsize=64)
def neighbor_table_on(grid: tuple[int, int], wrap: bool, device: torch.device, sort: bool = False) -> torch.Tensor:
    """``neighbor_table`` (its rows sorted with ``sort``) on ``device``, built once per grid and device:
    copied to the GPU at every step it would make each step wait for that copy (a host synchronisation)."""
    table = neighbor_table(grid, wrap)
    return (table.sort(dim=-1).values if sort else table).to(device)


def _gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """tokens (N, L, D) at index (N, P) -> (N, P, D)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def _neighbor_table_at(table: torch.Tensor, positions: torch.Tensor | None, batch: int) -> torch.Tensor:
    """The (N, P, K) rows of ``table`` (L, K) for ``positions`` (N, P), or all L rows."""
    return table.expand(batch, -1, -1) if positions is None else table[positions]


def _neighbor_cosine(tokens: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """(N, P, K) cosine similarity of the tokens at ``positions`` with the neighbours in ``rows`` (N, P, K).

    One neighbour column at a time, so memory stays at two copies of the tokens even for
    long sequences (patch 2 at 224 px gives 12,544 tokens).
    """
    unit = F.normalize(tokens.float(), dim=-1)
    centre = unit if positions is None else _gather_tokens(unit, positions)
    safe = rows.clamp(min=0)
    return torch.stack([(centre * _gather_tokens(unit, safe[..., k])).sum(-1) for k in range(rows.shape[-1])], dim=-1)


def _check_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> None:
    if tokens.dim() != 3 or tokens.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not lie on a {grid[0]}x{grid[1]} grid")
    if grid[0] * grid[1] < 2:
        raise ConfigError("a grid of one token has no neighbours")


@torch.no_grad()
def closest_neighbor_index(
    tokens: torch.Tensor, grid: tuple[int, int], wrap: bool = True, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, L) index of each token's most cosine-similar neighbour in its 3x3 window.

    Ties go to the lowest token index. With ``positions`` (N, P), only those tokens' neighbours
    are computed and the result is (N, P).
    """
    _check_grid(tokens, grid)
    rows = _neighbor_table_at(neighbor_table_on(tuple(grid), wrap, tokens.device), positions, tokens.shape[0])
    valid = rows >= 0
    # A non-finite token (e.g. an fp16 overflow) must not yield an index outside the sequence.
    sims = _neighbor_cosine(tokens, rows, positions).nan_to_num(nan=float("-inf")).masked_fill(~valid, float("-inf"))
    best = sims.amax(dim=-1, keepdim=True)
    ties = (sims == best) & valid
    return torch.where(ties, rows, torch.full_like(rows, tokens.shape[1])).amin(dim=-1)


def check_authors_code_grid(grid: tuple[int, int]) -> None:
    if min(grid) < 2 or grid[0] * grid[1] < 8:
        raise ConfigError(f"the authors' CNP selection needs a grid of at least 8 tokens with sides >= 2, got {grid}")


@torch.no_grad()
def authors_code_source_index(
    tokens: torch.Tensor, grid: tuple[int, int], positions: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, L) index of the token the authors' public code copies into the second branch.

    Their code lists each token's 8 torus neighbours sorted by index, finds the slot ``s`` of the
    most similar one, then gathers along the token axis: position ``l`` receives the
    smallest-index neighbour of token number ``s``. Needs at least 8 tokens and both grid sides
    of at least 2 (so that every token has 8 listed neighbours). ``positions`` as in
    ``closest_neighbor_index``.
    """
    _check_grid(tokens, grid)
    check_authors_code_grid(grid)
    sorted_table = neighbor_table_on(tuple(grid), True, tokens.device, sort=True)
    rows = _neighbor_table_at(sorted_table, positions, tokens.shape[0])
    best_slot = _neighbor_cosine(tokens, rows, positions).argmax(dim=-1)
    return sorted_table[best_slot, 0]


def random_other_index(
    batch: int,
    length: int,
    device=None,
    generator: torch.Generator | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, L) index of a uniformly random token other than the position itself (or (N, P) for ``positions``)."""
    if length < 2:
        raise ConfigError("a random other token needs a sequence of at least 2 tokens")
    if positions is None:
        positions = torch.arange(length, device=device).expand(batch, -1)
    shift = torch.randint(1, length, positions.shape, device=device, generator=generator)
    return (positions + shift) % length


def cnp_source_index(
    tokens: torch.Tensor,
    grid: tuple[int, int],
    mode: str = "paper",
    wrap: bool = True,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, L) the token whose embedding stands in for each position in the CNP branch.

    With ``positions`` (N, P), only for those positions: the training step needs the kept ones only.
    """
    if mode == "paper":
        return closest_neighbor_index(tokens, grid, wrap=wrap, positions=positions)
    if mode == "authors_code":
        return authors_code_source_index(tokens, grid, positions=positions)
    if mode == "random":
        return random_other_index(tokens.shape[0], tokens.shape[1], device=tokens.device, positions=positions)
    raise ConfigError(f"unknown CNP mode {mode!r}; choose one of {CNP_MODES}")


@torch.no_grad()
def true_neighbor_fraction(
    tokens: torch.Tensor, grid: tuple[int, int], source: torch.Tensor, positions: torch.Tensor, wrap: bool = True
) -> torch.Tensor:
    """The fraction of ``positions`` (N, P) whose partner ``source`` (N, P) is a true closest neighbour.

    True: a neighbour in the 3x3 window (``wrap`` as the paper's selection) whose cosine similarity
    equals the window's best, so a partner tied with the lowest-index best one counts too.
    Consumes no random numbers (a diagnostic must not move the training's random streams).
    """
    _check_grid(tokens, grid)
    rows = _neighbor_table_at(neighbor_table_on(tuple(grid), wrap, tokens.device), positions, tokens.shape[0])
    valid = rows >= 0
    sims = _neighbor_cosine(tokens, rows, positions).nan_to_num(nan=float("-inf")).masked_fill(~valid, float("-inf"))
    best = sims.amax(dim=-1, keepdim=True)
    hit = (rows == source.unsqueeze(-1)) & valid & (sims >= best)
    return hit.any(dim=-1).float().mean()
