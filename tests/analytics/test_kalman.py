"""The block form of the Kalman filter (analytics/kalman.py) against the full 8x8 equations, written out here as
in SORT / DeepSORT: the same means and covariances through initiate, predict (one and several steps) and update."""

import numpy as np

from jetcam_app.analytics import kalman

PW, VW = kalman.POSITION_WEIGHT, kalman.VELOCITY_WEIGHT


def _full(blocks: np.ndarray) -> np.ndarray:
    """(N, 8, 8) from the (N, 3, 4) block layout."""
    n = len(blocks)
    out = np.zeros((n, 8, 8))
    i = np.arange(4)
    out[:, i, i] = blocks[:, 0]
    out[:, i, i + 4] = out[:, i + 4, i] = blocks[:, 1]
    out[:, i + 4, i + 4] = blocks[:, 2]
    return out


def _stds(h, position, velocity, aspect, aspect_velocity):
    return np.stack([position * h, position * h, np.full_like(h, aspect), position * h,
                     velocity * h, velocity * h, np.full_like(h, aspect_velocity), velocity * h], axis=1)


def _predict_full(means, covs, steps):
    motion = np.eye(8)
    motion[np.arange(4), np.arange(4) + 4] = steps
    q = np.zeros_like(covs)
    q[:, np.arange(8), np.arange(8)] = _stds(means[:, 3], PW, VW, 1e-2, 1e-5) ** 2 * steps
    return means @ motion.T, motion @ covs @ motion.T + q


def _update_full(means, covs, z):
    h = np.zeros((4, 8))
    h[np.arange(4), np.arange(4)] = 1
    r = np.zeros((len(means), 4, 4))
    r[:, np.arange(4), np.arange(4)] = np.stack([PW * means[:, 3], PW * means[:, 3],
                                                 np.full(len(means), 1e-1), PW * means[:, 3]], axis=1) ** 2
    s = h @ covs @ h.T + r
    gain = covs @ h.T @ np.linalg.inv(s)
    means = means + (gain @ (z - means @ h.T)[:, :, None])[:, :, 0]
    return means, covs - gain @ s @ gain.transpose(0, 2, 1)


def test_block_form_matches_the_full_filter():
    rng = np.random.default_rng(3)
    boxes = np.concatenate([rng.uniform(0, 500, (20, 2)), rng.uniform(0, 500, (20, 2)) + 20], axis=1)
    means, covs = kalman.initiate(kalman.xyxy_to_xyah(boxes))
    full_means, full_covs = means.copy(), _full(covs)
    init_stds = _stds(means[:, 3], 2 * PW, 10 * VW, 1e-2, 1e-5)
    np.testing.assert_allclose(full_covs[:, np.arange(8), np.arange(8)], init_stds ** 2)
    for step, steps in enumerate([1, 1, 3, 1, 2, 1]):
        means, covs = kalman.predict(means, covs, steps)
        full_means, full_covs = _predict_full(full_means, full_covs, steps)
        np.testing.assert_allclose(means, full_means, rtol=1e-10)
        np.testing.assert_allclose(_full(covs), full_covs, rtol=1e-10, atol=1e-12)
        if step % 2 == 0:
            moved = kalman.xyxy_to_xyah(boxes + rng.normal(0, 3, boxes.shape) + step * 4)
            means, covs = kalman.update(means, covs, moved)
            full_means, full_covs = _update_full(full_means, full_covs, moved)
            np.testing.assert_allclose(means, full_means, rtol=1e-9)
            np.testing.assert_allclose(_full(covs), full_covs, rtol=1e-9, atol=1e-12)
    assert np.abs(means[:, 4:]).max() > 1  # the velocities were learned: the test exercised the coupling


def test_box_conversions_round_trip():
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 3.0, 1.0]])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(boxes)), boxes)
