"""Every assignment solver a stack may end up with (lap, scipy, the built-in Hungarian) gives the same least total
cost on the same matrices, rectangular both ways, and assign() leaves pairs over the threshold unmatched."""

import numpy as np
import pytest

from jetcam_app.analytics import assignment


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 7), (7, 4), (30, 25), (0, 3)])
def test_every_solver_finds_the_least_total_cost(shape):
    rng = np.random.default_rng(sum(shape))
    cost = rng.random(shape)
    totals = {}
    for name, solve in assignment.SOLVERS.items():
        rows, cols = solve(cost)
        assert len(set(np.asarray(rows).tolist())) == len(rows) == min(shape)
        assert len(set(np.asarray(cols).tolist())) == len(cols)
        totals[name] = float(cost[rows, cols].sum()) if len(rows) else 0.0
    assert "built-in Hungarian (install lap==0.5.13 for a faster solver)" in totals
    best = min(totals.values())
    # brute force on the small ones: the least total really is the least
    if shape in ((3, 3), (4, 7)):
        import itertools
        brute = min(sum(cost[i, p[i]] for i in range(shape[0])) for p in itertools.permutations(range(shape[1]), shape[0]))
        assert best == pytest.approx(brute)
    for total in totals.values():
        assert total == pytest.approx(best)


def test_assign_leaves_pairs_over_the_threshold_unmatched():
    cost = np.array([[0.1, 0.9, 0.95], [0.85, 0.2, 0.9], [0.99, 0.97, 0.96]])
    matches, rows, cols = assignment.assign(cost, 0.8)
    assert matches == [(0, 0), (1, 1)] and rows == [2] and cols == [2]
    # blocking first: unblocked, the least total (0.1 + 0.65) goes through the forbidden 0.65 and keeps one match;
    # blocked, the two allowed pairs (0.5 + 0.5) are both matched
    cost = np.array([[0.1, 0.5], [0.5, 0.65]])
    matches, rows, cols = assignment.assign(cost, 0.6)
    assert matches == [(0, 1), (1, 0)] and rows == [] and cols == []
