"""A constant-velocity Kalman filter over boxes as (centre x, centre y, aspect, height), stepped for many tracks at
once: per-track matrix calls cost more in Python overhead than the arithmetic, and a frame may hold 100 tracks.
The noise scales with the box height, as in SORT / DeepSORT: a near, large object moves more pixels per frame."""

import numpy as np

POSITION_WEIGHT = 1.0 / 20
VELOCITY_WEIGHT = 1.0 / 160
NDIM = 4


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    xyah = np.asarray(xyah, np.float64).reshape(-1, 4)
    w = xyah[:, 2] * xyah[:, 3]
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - xyah[:, 3] / 2,
                     xyah[:, 0] + w / 2, xyah[:, 1] + xyah[:, 3] / 2], axis=1)


def _stds(h: np.ndarray, position: float, velocity: float, aspect: float, aspect_velocity: float) -> np.ndarray:
    """(N, 8) standard deviations for tracks of heights h: position and velocity terms scale with the height, the
    aspect's are constant (one broadcast rather than eight columns stacked)."""
    scale = np.array([position, position, 0.0, position, velocity, velocity, 0.0, velocity])
    constant = np.array([0.0, 0.0, aspect, 0.0, 0.0, 0.0, aspect_velocity, 0.0])
    return h[:, None] * scale + constant


def initiate(measurements: np.ndarray):
    """(means (N, 8), covariances (N, 8, 8)) of new tracks at these xyah boxes, at rest, unsure of their speed."""
    z = np.asarray(measurements, np.float64).reshape(-1, NDIM)
    means = np.concatenate([z, np.zeros_like(z)], axis=1)
    stds = _stds(z[:, 3], 2 * POSITION_WEIGHT, 10 * VELOCITY_WEIGHT, 1e-2, 1e-5)
    covs = np.zeros((len(z), 8, 8))
    idx = np.arange(8)
    covs[:, idx, idx] = stds ** 2
    return means, covs


def predict(means: np.ndarray, covs: np.ndarray, steps: float = 1.0):
    """Every track `steps` frames ahead (several when frames were dropped in between)."""
    if not len(means):
        return means, covs
    motion = np.eye(8)
    motion[np.arange(NDIM), np.arange(NDIM) + NDIM] = steps
    stds = _stds(means[:, 3], POSITION_WEIGHT, VELOCITY_WEIGHT, 1e-2, 1e-5)
    idx = np.arange(8)
    means = means @ motion.T
    covs = motion @ covs @ motion.T
    covs[:, idx, idx] += stds ** 2 * steps
    return means, covs


def update(means: np.ndarray, covs: np.ndarray, measurements: np.ndarray):
    """Each track corrected by its matched xyah box."""
    if not len(means):
        return means, covs
    z = np.asarray(measurements, np.float64).reshape(-1, NDIM)
    r = (means[:, 3:4] * np.array([POSITION_WEIGHT, POSITION_WEIGHT, 0.0, POSITION_WEIGHT])
         + np.array([0.0, 0.0, 1e-1, 0.0])) ** 2
    innovation_cov = covs[:, :NDIM, :NDIM].copy()
    idx = np.arange(NDIM)
    innovation_cov[:, idx, idx] += r
    cross = covs[:, :, :NDIM]  # P H^T, (N, 8, 4)
    # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite)
    gain = np.linalg.solve(innovation_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
    means = means + (gain @ (z - means[:, :NDIM])[:, :, None])[:, :, 0]
    covs = covs - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return means, covs
