"""A constant-velocity Kalman filter over boxes as (centre x, centre y, aspect, height), stepped for many tracks at
once: per-track matrix calls cost more in Python overhead than the arithmetic, and a frame may hold 100 tracks.
The noise scales with the box height, as in SORT / DeepSORT: a near, large object moves more pixels per frame.

Each of the four measured values is coupled only to its own velocity (the motion, both noises and the measurement
are per value), so a track's 8x8 covariance is four 2x2 blocks from its first frame on. They are kept as such:
covs (N, 3, 4) holds, per value, var(position), cov(position, velocity), var(velocity). The equations are the full
filter's, exactly (tests/analytics/test_kalman.py), with no 8x8 products or solves."""

import numpy as np

POSITION_WEIGHT = 1.0 / 20
VELOCITY_WEIGHT = 1.0 / 160
NDIM = 4
_MASK = np.array([1.0, 1.0, 0.0, 1.0])  # the values whose noise scales with the height (the aspect's does not)
_ASPECT = np.array([0.0, 0.0, 1.0, 0.0])


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    xyah = np.asarray(xyah, np.float64).reshape(-1, 4)
    half = np.stack([xyah[:, 2] * xyah[:, 3], xyah[:, 3]], axis=1) / 2
    return np.concatenate([xyah[:, :2] - half, xyah[:, :2] + half], axis=1)


def _variances(h: np.ndarray, position: float, velocity: float, aspect: float, aspect_velocity: float) -> np.ndarray:
    """(N, 3, 4) diagonal noise in the block layout for tracks of heights h (no position-velocity term): position
    and velocity standard deviations scale with the height, the aspect's are constant."""
    out = np.zeros((len(h), 3, NDIM))
    h2 = (h * h)[:, None]
    out[:, 0] = h2 * (position ** 2 * _MASK) + aspect ** 2 * _ASPECT
    out[:, 2] = h2 * (velocity ** 2 * _MASK) + aspect_velocity ** 2 * _ASPECT
    return out


def initiate(measurements: np.ndarray):
    """(means (N, 8), covariances (N, 3, 4)) of new tracks at these xyah boxes, at rest, unsure of their speed."""
    z = np.asarray(measurements, np.float64).reshape(-1, NDIM)
    means = np.concatenate([z, np.zeros_like(z)], axis=1)
    return means, _variances(z[:, 3], 2 * POSITION_WEIGHT, 10 * VELOCITY_WEIGHT, 1e-2, 1e-5)


def predict(means: np.ndarray, covs: np.ndarray, steps=1.0):
    """Every track `steps` frames ahead (several when frames were dropped in between): a number, or one per track
    (the sources of a batch dropped different frames)."""
    if not len(means):
        return means, covs
    noise = _variances(means[:, 3], POSITION_WEIGHT, VELOCITY_WEIGHT, 1e-2, 1e-5)
    s = np.asarray(steps, np.float64)
    s = s.reshape(-1, 1) if s.ndim else s
    means = means.copy()
    means[:, :NDIM] += s * means[:, NDIM:]
    out = np.empty_like(covs)  # F P F^T per block, F = [[1, s], [0, 1]], plus the noise of s steps
    out[:, 0] = covs[:, 0] + 2.0 * s * covs[:, 1] + s * s * covs[:, 2] + noise[:, 0] * s
    out[:, 1] = covs[:, 1] + s * covs[:, 2]
    out[:, 2] = covs[:, 2] + noise[:, 2] * s
    return means, out


def update(means: np.ndarray, covs: np.ndarray, measurements: np.ndarray):
    """Each track corrected by its matched xyah box."""
    if not len(means):
        return means, covs
    z = np.asarray(measurements, np.float64).reshape(-1, NDIM)
    r = (means[:, 3:4] * (POSITION_WEIGHT * _MASK) + 1e-1 * _ASPECT) ** 2
    innovation = covs[:, 0] + r  # S per value
    gain = covs[:, :2] / innovation[:, None]  # K for the position and the velocity, (N, 2, 4)
    means = means + (gain * (z - means[:, :NDIM])[:, None]).reshape(-1, 2 * NDIM)
    out = np.empty_like(covs)
    out[:, :2] = covs[:, :2] - covs[:, 0:1] * gain  # pp - pp^2/S, pv - pp pv/S
    out[:, 2] = covs[:, 2] - covs[:, 1] * gain[:, 1]  # vv - pv^2/S
    return means, out
