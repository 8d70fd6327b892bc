"""The demo data: scikit-learn's handwritten digits (1,797 images, 8x8, values 0..16; ships inside the package).

Two views of the same images and the same fixed train/test split:
- `digit_images`: `[N, 1, 8, 8]` float32 in [0, 1], for the GAC + MS-ResNet demo model;
- `digit_events`: `[N, T, 2, 16, 16]` float32 event counts, a deterministic DVS-style emulation for the TCJA demo model.

The emulation follows how event cameras and the N-MNIST recordings work: the (upsampled) image moves along a small
saccade path; every pixel keeps a reference log intensity and emits one event each time its log intensity moves a
contrast threshold away from the reference, which then moves by one threshold. Channel 0 holds OFF events and
channel 1 ON events (SpikingJelly's channel = polarity bit, as in DVS128 Gesture). Frames count the events of each
pixel and polarity per time step, as SpikingJelly's frame integration does.
"""
from functools import lru_cache

import numpy as np
from scipy import ndimage

NUM_CLASSES = 10
TEST_FRACTION = 0.2
SPLIT_SEED = 0

EVENT_SIZE = 16  # 8x8 digits upsampled 2x so a saccade of a pixel or two is sub-digit motion
EVENT_TIMESTEPS = 8
CONTRAST_THRESHOLD = 0.5  # natural-log units; keeps per-step counts small (at most 5) like a real sensor
LOG_EPS = 0.1  # keeps log() finite on the black background (the camera's dark current plays this role)
# Saccade path in pixels (dy, dx), one position per time step after the initial one; a closed triangle like N-MNIST's.
SACCADE = [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (1.5, 0.5), (2.0, 0.0), (1.5, -0.5), (1.0, -1.0), (0.5, -0.5), (0.0, 0.0)]


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    labels = data.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels)
    return images, labels, {"train": np.sort(idx_train), "test": np.sort(idx_test), "all": np.arange(len(labels))}


def _select(split: str):
    images, labels, splits = _digits()
    if split not in splits:
        raise ValueError(f"unknown digits split {split!r}; use one of {sorted(splits)}")
    idx = splits[split]
    return images[idx], labels[idx]


def digit_images(split: str = "test"):
    """`(X [N,1,8,8] float32 in [0,1], y [N] int64)`."""
    images, labels = _select(split)
    return images[:, None], labels


def emulate_events(images: np.ndarray, timesteps: int = EVENT_TIMESTEPS) -> np.ndarray:
    """DVS emulation of `images` `[N,8,8]` in [0,1] → event-count frames `[N, T, 2, 16, 16]` float32."""
    if timesteps + 1 > len(SACCADE):
        raise ValueError(f"the saccade path has {len(SACCADE) - 1} steps; asked for {timesteps}")
    frames = np.zeros((len(images), timesteps, 2, EVENT_SIZE, EVENT_SIZE), np.float32)
    scale = EVENT_SIZE / images.shape[-1]
    for n, img in enumerate(images):
        big = ndimage.zoom(img.astype(np.float64), scale, order=1, mode="nearest")
        log_i = [np.log(LOG_EPS + np.clip(ndimage.shift(big, s, order=1, mode="grid-constant"), 0, None))
                 for s in SACCADE[: timesteps + 1]]
        # The reference is kept as an integer number of thresholds above the start level, so a pixel that returns
        # to its start intensity lands exactly on its reference (no drift from summing floats).
        level = np.zeros_like(big)
        for t in range(timesteps):
            crossings = np.trunc((log_i[t + 1] - log_i[0]) / CONTRAST_THRESHOLD - level)
            frames[n, t, 0] = np.clip(-crossings, 0, None)
            frames[n, t, 1] = np.clip(crossings, 0, None)
            level += crossings
    return frames


def digit_events(split: str = "test", timesteps: int = EVENT_TIMESTEPS):
    """`(X [N,T,2,16,16] float32 event counts, y [N] int64)`, computed once per process and split."""
    return _events(split, timesteps), _select(split)[1]


@lru_cache(maxsize=4)
def _events(split: str, timesteps: int) -> np.ndarray:
    images, _ = _select(split)
    return emulate_events(images, timesteps)
