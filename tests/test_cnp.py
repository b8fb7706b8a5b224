"""Closest-neighbour-patch selection (normae/cnp.py) against brute-force references."""

import numpy as np
import pytest
import torch

from normae.core import cnp
from normae.core.cnp import (
    CNP_MODES,
    authors_code_source_index,
    closest_neighbor_index,
    cnp_source_index,
    neighbor_table,
    random_other_index,
)

OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


# ----------------------------------------------------------------------------- references


def window_neighbors(l, grid, wrap):
    """Token indices of l's 3x3 window (with repetitions, in offset order); None where out of image."""
    height, width = grid
    r, c = divmod(l, width)
    out = []
    for dy, dx in OFFSETS:
        rr, cc = r + dy, c + dx
        if wrap:
            rr, cc = rr % height, cc % width
        elif not (0 <= rr < height and 0 <= cc < width):
            out.append(None)
            continue
        out.append(rr * width + cc)
    return out


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def brute_closest(tokens, grid, wrap):
    x = tokens.double().numpy()
    n_batch, length, _ = x.shape
    out = np.zeros((n_batch, length), dtype=np.int64)
    for n in range(n_batch):
        for l in range(length):
            best, best_j = -np.inf, None
            for j in window_neighbors(l, grid, wrap):
                if j is None or j == l:
                    continue
                s = cosine(x[n, l], x[n, j])
                if s > best or (s == best and j < best_j):
                    best, best_j = s, j
            out[n, l] = best_j
    return torch.from_numpy(out)


def brute_authors(tokens, grid):
    """Sorted torus neighbours, slot of the most similar one, smallest neighbour of token #slot."""
    x = tokens.double().numpy()
    n_batch, length, _ = x.shape
    sorted_neigh = [sorted(window_neighbors(l, grid, True)) for l in range(length)]
    out = np.zeros((n_batch, length), dtype=np.int64)
    for n in range(n_batch):
        for l in range(length):
            sims = [cosine(x[n, l], x[n, j]) for j in sorted_neigh[l]]
            slot = int(np.argmax(sims))  # first maximum
            out[n, l] = sorted_neigh[slot][0]
    return torch.from_numpy(out)


def onehot_tokens(grid, dim, assignment, default_axis=None):
    """Tokens that are one-hot vectors; ``assignment`` maps token index -> axis.

    Unassigned tokens get distinct axes of their own (orthogonal to everything) unless
    ``default_axis`` is given.
    """
    length = grid[0] * grid[1]
    tokens = torch.zeros(1, length, dim)
    spare = max(assignment.values(), default=-1) + 1
    for l in range(length):
        if l in assignment:
            axis = assignment[l]
        elif default_axis is not None:
            axis = default_axis
        else:
            axis = spare
            spare += 1
        tokens[0, l, axis] = 1.0
    return tokens


# ----------------------------------------------------------------------------- closest_neighbor_index

GRIDS = [(3, 3), (4, 7), (7, 4), (14, 14), (2, 5), (1, 6), (5, 2), (2, 2)]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("wrap", [True, False])
def test_closest_matches_brute_force(grid, wrap):
    g = torch.Generator().manual_seed(grid[0] * 100 + grid[1] + wrap)
    tokens = torch.randn(3, grid[0] * grid[1], 8, generator=g, dtype=torch.float64)
    got = closest_neighbor_index(tokens, grid, wrap=wrap)
    assert got.shape == (3, grid[0] * grid[1])
    assert got.dtype == torch.long
    assert torch.equal(got, brute_closest(tokens, grid, wrap))


def test_closest_float32_and_batch_independence():
    grid = (6, 5)
    tokens = torch.randn(4, 30, 16, generator=torch.Generator().manual_seed(3))
    got = closest_neighbor_index(tokens, grid)
    assert torch.equal(got, brute_closest(tokens, grid, True))
    # each sample is handled on its own
    for n in range(4):
        assert torch.equal(closest_neighbor_index(tokens[n : n + 1], grid)[0], got[n])


def test_closest_ignores_magnitude():
    """Cosine, not dot product: scaling a token does not change anyone's choice."""
    grid = (4, 4)
    tokens = torch.randn(1, 16, 8, generator=torch.Generator().manual_seed(5))
    scaled = tokens * torch.rand(1, 16, 1, generator=torch.Generator().manual_seed(6)).mul(100).add(0.01)
    assert torch.equal(closest_neighbor_index(tokens, grid), closest_neighbor_index(scaled, grid))


@pytest.mark.parametrize("wrap", [True, False])
@pytest.mark.parametrize("grid", [(3, 3), (4, 5), (1, 4)])
def test_all_equal_tokens_pick_lowest_neighbor(grid, wrap):
    length = grid[0] * grid[1]
    tokens = torch.ones(2, length, 4)
    got = closest_neighbor_index(tokens, grid, wrap=wrap)
    expected = [min(j for j in window_neighbors(l, grid, wrap) if j is not None and j != l) for l in range(length)]
    assert got.tolist() == [expected, expected]


def test_never_returns_itself():
    tokens = torch.randn(2, 12, 4, generator=torch.Generator().manual_seed(0))
    for grid in [(3, 4), (1, 12), (12, 1), (2, 6)]:
        for wrap in (True, False):
            got = closest_neighbor_index(tokens, grid, wrap=wrap)
            assert not (got == torch.arange(12)).any()


def test_tie_across_wrapped_border_goes_to_lower_index():
    # Token (1, 4) on a 3x5 grid (index 9). Its inside neighbour (1, 3) = 8 and its wrapped neighbour
    # (1, 0) = 5 are exact copies of it; every other token is orthogonal to all.
    grid = (3, 5)
    tokens = onehot_tokens(grid, 32, {9: 0, 8: 0, 5: 0})
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 9].item() == 5
    assert closest_neighbor_index(tokens, grid, wrap=False)[0, 9].item() == 8
    # and the two partners see each other / token 9 through the lowest index too
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 8].item() == 9
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 5].item() == 9


def test_tie_lower_index_wins_inside_image():
    # Token 12 (centre of 5x5) has two exact copies among its neighbours: 18 and 6 -> 6.
    grid = (5, 5)
    tokens = onehot_tokens(grid, 40, {12: 0, 18: 0, 6: 0})
    assert closest_neighbor_index(tokens, grid, wrap=False)[0, 12].item() == 6
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 12].item() == 6


def test_wrap_false_corner_stays_in_window():
    grid = (5, 6)
    allowed = {0: {1, 6, 7}, 5: {4, 10, 11}, 24: {18, 19, 25}, 29: {22, 23, 28}}
    g = torch.Generator().manual_seed(11)
    for _ in range(20):
        tokens = torch.randn(4, 30, 3, generator=g)
        got = closest_neighbor_index(tokens, grid, wrap=False)
        for corner, window in allowed.items():
            assert set(got[:, corner].tolist()) <= window


def test_wrap_true_can_pick_opposite_edge():
    grid = (4, 6)
    # token 6 (row 1, col 0) equals token 11 (row 1, col 5, across the left border), and the
    # diagonal wrapped neighbour 5 (row 0, col 5) is close; inside neighbours are anti-aligned.
    tokens = -torch.ones(1, 24, 3)
    tokens[0, 6] = torch.tensor([1.0, 0.0, 0.0])
    tokens[0, 11] = torch.tensor([1.0, 0.0, 0.0])
    tokens[0, 5] = torch.tensor([1.0, 0.1, 0.0])
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 6].item() == 11
    got = closest_neighbor_index(tokens, grid, wrap=False)[0, 6].item()
    assert got in {0, 1, 7, 12, 13}
    # the rows wrap too: token 1 (row 0) equals token 19 (row 3, same column)
    tokens = -torch.ones(1, 24, 3)
    tokens[0, 1] = torch.tensor([0.0, 1.0, 0.0])
    tokens[0, 19] = torch.tensor([0.0, 1.0, 0.0])
    assert closest_neighbor_index(tokens, grid, wrap=True)[0, 1].item() == 19
    assert closest_neighbor_index(tokens, grid, wrap=False)[0, 1].item() in {0, 2, 6, 7, 8}


# ----------------------------------------------------------------------------- neighbor_table


def test_neighbor_table_14x14_wrap():
    table = neighbor_table((14, 14), wrap=True)
    assert table.shape == (196, 8)
    assert table.dtype == torch.long
    # row 13 starts at 13 * 14 = 182, so token 0's wrapped upper neighbours are 195, 182, 183
    assert set(table[0].tolist()) == {1, 13, 14, 15, 27, 182, 183, 195}
    assert table[0].tolist() == [195, 182, 183, 13, 1, 27, 14, 15]
    assert table[195].tolist() == [180, 181, 168, 194, 182, 12, 13, 0]
    assert (table >= 0).all()
    # every token has 8 distinct neighbours on a 14x14 torus, and the relation is symmetric
    assert all(len(set(row)) == 8 for row in table.tolist())
    for l in (0, 20, 195):
        for j in table[l].tolist():
            assert l in table[j].tolist()


def test_neighbor_table_entries():
    # interior token (2, 3) of 5x6 in window (row-major offset) order
    table = neighbor_table((5, 6), wrap=False)
    assert table.shape == (30, 8)
    assert table[15].tolist() == [8, 9, 10, 14, 16, 20, 21, 22]
    assert table[0].tolist() == [-1, -1, -1, -1, 1, -1, 6, 7]
    assert table[29].tolist() == [22, 23, -1, 28, -1, -1, -1, -1]
    # wrap=True equals the wrapped brute force everywhere
    wrapped = neighbor_table((5, 6), wrap=True)
    for l in range(30):
        assert wrapped[l].tolist() == window_neighbors(l, (5, 6), True)
        assert table[l].tolist() == [-1 if j is None else j for j in window_neighbors(l, (5, 6), False)]


def test_neighbor_table_side_one_has_no_self_neighbors():
    table = neighbor_table((1, 6), wrap=True)
    # offsets (-1, 0) and (1, 0) land back on the token itself
    assert table[2].tolist() == [1, -1, 3, 1, 3, 1, -1, 3]
    assert not (table == torch.arange(6)[:, None]).any()


# ----------------------------------------------------------------------------- authors' code


def test_authors_code_sources_are_first_row_tokens():
    grid = (14, 14)
    tokens = torch.randn(4, 196, 32, generator=torch.Generator().manual_seed(0))
    src = authors_code_source_index(tokens, grid)
    assert src.shape == (4, 196)
    assert set(src.unique().tolist()) <= set(range(7))
    agree = (src == closest_neighbor_index(tokens, grid, wrap=True)).float().mean().item()
    assert agree < 0.05


@pytest.mark.parametrize("grid", [(14, 14), (3, 3), (4, 7), (7, 4), (2, 4), (4, 2), (2, 5), (3, 6)])
def test_authors_code_matches_brute_force(grid):
    g = torch.Generator().manual_seed(grid[0] * 31 + grid[1])
    tokens = torch.randn(2, grid[0] * grid[1], 12, generator=g, dtype=torch.float64)
    assert torch.equal(authors_code_source_index(tokens, grid), brute_authors(tokens, grid))


def test_authors_code_constructed_slot():
    # On 14x14, token 20's sorted torus neighbours are [5, 6, 7, 19, 21, 33, 34, 35]; make the
    # neighbour in slot 3 (token 19) its copy: it then receives the smallest neighbour of token 3 = 2.
    grid = (14, 14)
    tokens = onehot_tokens(grid, 200, {20: 0, 19: 0})
    assert sorted(neighbor_table(grid)[20].tolist()) == [5, 6, 7, 19, 21, 33, 34, 35]
    assert authors_code_source_index(tokens, grid)[0, 20].item() == 2
    assert closest_neighbor_index(tokens, grid)[0, 20].item() == 19


@pytest.mark.parametrize("grid", [(2, 3), (3, 2), (1, 8), (8, 1), (1, 12)])
def test_authors_code_rejects_small_grids(grid):
    tokens = torch.randn(1, grid[0] * grid[1], 4)
    with pytest.raises(ValueError):
        authors_code_source_index(tokens, grid)


# ----------------------------------------------------------------------------- random control


def test_random_other_index_never_self_and_in_range():
    torch.manual_seed(0)
    idx = random_other_index(500, 7)
    assert idx.shape == (500, 7)
    assert idx.dtype == torch.long
    assert ((idx >= 0) & (idx < 7)).all()
    assert not (idx == torch.arange(7)).any()


def test_random_other_index_is_uniform_over_the_others():
    length, batch = 5, 4000
    idx = random_other_index(batch, length, generator=torch.Generator().manual_seed(1))
    expected = batch / (length - 1)
    for pos in range(length):
        counts = torch.bincount(idx[:, pos], minlength=length)
        assert counts[pos] == 0
        others = counts[torch.arange(length) != pos].double()
        chi2 = ((others - expected) ** 2 / expected).sum().item()
        assert chi2 < 20.0  # 3 degrees of freedom: P(chi2 > 20) < 2e-4
        assert (others - expected).abs().max() < 0.1 * expected


def test_random_other_index_reproducible():
    torch.manual_seed(123)
    a = random_other_index(3, 10)
    torch.manual_seed(123)
    b = random_other_index(3, 10)
    c = random_other_index(3, 10)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    ga = random_other_index(3, 10, generator=torch.Generator().manual_seed(9))
    gb = random_other_index(3, 10, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ga, gb)


# ----------------------------------------------------------------------------- dispatch and checks


def test_cnp_source_index_dispatch():
    grid = (4, 5)
    tokens = torch.randn(2, 20, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(cnp_source_index(tokens, grid, "paper"), closest_neighbor_index(tokens, grid, wrap=True))
    assert torch.equal(
        cnp_source_index(tokens, grid, "paper", wrap=False), closest_neighbor_index(tokens, grid, wrap=False)
    )
    assert torch.equal(cnp_source_index(tokens, grid, "authors_code"), authors_code_source_index(tokens, grid))
    torch.manual_seed(7)
    got = cnp_source_index(tokens, grid, "random")
    torch.manual_seed(7)
    assert torch.equal(got, random_other_index(2, 20))
    assert set(CNP_MODES) == {"paper", "authors_code", "random"}


def test_cnp_source_index_passes_wrap():
    grid = (4, 6)
    tokens = -torch.ones(1, 24, 3)
    tokens[0, 6] = torch.tensor([1.0, 0.0, 0.0])
    tokens[0, 11] = torch.tensor([1.0, 0.0, 0.0])
    assert cnp_source_index(tokens, grid, "paper", wrap=True)[0, 6].item() == 11
    assert cnp_source_index(tokens, grid, "paper", wrap=False)[0, 6].item() != 11


def test_cnp_source_index_dispatches_through_module_functions(monkeypatch):
    calls = []
    monkeypatch.setattr(
        cnp, "closest_neighbor_index", lambda t, g, wrap=True, positions=None: calls.append(("paper", wrap)) or "p"
    )
    monkeypatch.setattr(
        cnp, "authors_code_source_index", lambda t, g, positions=None: calls.append(("authors",)) or "a"
    )
    tokens = torch.zeros(1, 9, 2)
    assert cnp.cnp_source_index(tokens, (3, 3), "paper", wrap=False) == "p"
    assert cnp.cnp_source_index(tokens, (3, 3), "authors_code") == "a"
    assert calls == [("paper", False), ("authors",)]


@pytest.mark.parametrize("mode", ["closest", "", "Paper", "authors"])
def test_cnp_source_index_rejects_unknown_mode(mode):
    with pytest.raises(ValueError, match="unknown CNP mode"):
        cnp_source_index(torch.randn(1, 9, 4), (3, 3), mode)


@pytest.mark.parametrize(
    "shape, grid",
    [((2, 10, 4), (3, 3)), ((2, 9, 4), (3, 4)), ((9, 4), (3, 3)), ((1, 2, 9, 4), (3, 3)), ((1, 1, 4), (1, 1))],
)
def test_wrong_token_shape_raises(shape, grid):
    tokens = torch.randn(*shape)
    with pytest.raises(ValueError):
        closest_neighbor_index(tokens, grid)
    with pytest.raises(ValueError):
        authors_code_source_index(tokens, grid)
    with pytest.raises(ValueError):
        cnp_source_index(tokens, grid, "paper")


@pytest.mark.parametrize("wrap", [True, False])
def test_non_finite_token_never_gives_an_index_outside_the_sequence(wrap):
    tokens = torch.randn(2, 9, 5)
    tokens[0, 4] = float("nan")
    tokens[1, 0] = float("inf")
    index = closest_neighbor_index(tokens, (3, 3), wrap=wrap)
    assert ((index >= 0) & (index < 9)).all()
    assert (index != torch.arange(9)).all()


def test_random_other_index_needs_two_tokens():
    with pytest.raises(ValueError, match="at least 2"):
        random_other_index(1, 1)


@pytest.mark.parametrize("mode, wrap", [("paper", True), ("paper", False), ("authors_code", True)])
def test_positions_give_the_full_result_at_those_positions(mode, wrap):
    tokens = torch.randn(3, 20, 6)
    positions = torch.stack([torch.randperm(20)[:7] for _ in range(3)])
    full = cnp_source_index(tokens, (4, 5), mode=mode, wrap=wrap)
    assert torch.equal(
        cnp_source_index(tokens, (4, 5), mode=mode, wrap=wrap, positions=positions), torch.gather(full, 1, positions)
    )


def test_random_other_index_at_positions_never_returns_the_position():
    positions = torch.stack([torch.randperm(9)[:4] for _ in range(50)])
    index = random_other_index(50, 9, positions=positions)
    assert index.shape == (50, 4) and (index != positions).all() and ((index >= 0) & (index < 9)).all()
