"""Box overlap and the assignment of detections to tracks: `lap` (Jonker-Volgenant, as Ultralytics uses) where it
installs (Python 3.8+), else scipy's, else a small Hungarian solver here, so every stack tracks alike."""

import logging
from typing import List, Tuple

import numpy as np

log = logging.getLogger(__name__)
BLOCKED = 1e6  # the cost of a pair that must never be matched (other class, below the overlap threshold)


def _solvers():
    """{name: function(cost) -> (rows, cols) int arrays}, the best first, of those importable here."""
    found = {}
    try:
        import lap  # type: ignore

        def solve_lap(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
            _, x, _ = lap.lapjv(cost, extend_cost=True)
            rows = np.nonzero(x >= 0)[0]
            return rows, x[rows]
        found["lap"] = solve_lap
    except ImportError:
        pass
    try:
        from scipy.optimize import linear_sum_assignment  # type: ignore

        found["scipy"] = linear_sum_assignment
    except ImportError:
        pass
    found["built-in Hungarian (install lap==0.5.13 for a faster solver)"] = hungarian_arrays
    return found


def hungarian(cost: np.ndarray) -> List[Tuple[int, int]]:
    """Minimum-cost assignment of a rectangular matrix (shortest augmenting paths with potentials, O(n^2 m)):
    each row of the smaller side gets one column. Fine for the few dozen tracks a frame holds."""
    cost = np.asarray(cost, np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        return []
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: the row (1-based) assigned to column j; 0 = free
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j]]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)


def hungarian_arrays(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    pairs = hungarian(cost)
    return (np.array([r for r, _ in pairs], np.int64), np.array([c for _, c in pairs], np.int64))


SOLVERS = _solvers()
SOLVER_NAME, _SOLVE = next(iter(SOLVERS.items()))


def assign(cost: np.ndarray, threshold: float) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Matches (row, col) of least total cost whose cost is at most `threshold`; unmatched rows and columns."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    # costs above the threshold are blocked before solving, so no allowed pair is given up to make room for one
    bounded = np.where(cost <= threshold, cost, BLOCKED)
    r, c = _SOLVE(bounded)
    ok = cost[r, c] <= threshold
    r, c = r[ok], c[ok]
    free_rows, free_cols = np.ones(rows, bool), np.ones(cols, bool)
    free_rows[r], free_cols[c] = False, False
    return (list(zip(r.tolist(), c.tolist())), np.nonzero(free_rows)[0].tolist(), np.nonzero(free_cols)[0].tolist())


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every xyxy box in `a` (N, 4) with every one in `b` (M, 4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)  # maximum, not clip: clip's wrapper costs more
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
