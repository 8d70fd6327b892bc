"""Where evaluation and calibration data come from: `--data NAME_OR_PATH` and `--calibration X.npy`."""
import hashlib
from pathlib import Path

import numpy as np

from .errors import UserError
from .models import datasets
from .models.zoo import get_arch

CALIBRATION_SAMPLES = 256


def _demo_data(loader: str):
    """`models.digits.<loader>`, imported on first use: scipy.ndimage alone takes a second or more to import, which
    every command reading this module (`export` of a user checkpoint, for one) would otherwise pay."""
    def load(split: str):
        from .models import digits
        return getattr(digits, loader)(split)
    return load


DEMO_DATA = {"digit-events": _demo_data("digit_events"), "digit-images": _demo_data("digit_images")}


def load_npy(path: Path, option: str, shape: tuple | None = None, events: bool = False) -> np.ndarray:
    """A float32 array from `.npy`, batch first, checked against the per-sample `shape` if given; with `events`,
    checked to hold event counts (non-negative integers)."""
    if not path.is_file():
        raise UserError(f"{option} {path}: no such file.")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f"{option} {path} is not a readable .npy array ({type(e).__name__}).") from None
    if shape is not None and (x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape)):
        raise UserError(f"{option} {path} has shape {tuple(x.shape)}; this model takes [N, {', '.join(map(str, shape))}].")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise UserError(f"{option} {path} has dtype {x.dtype}; expected real numbers.")
    if len(x) == 0:
        raise UserError(f"{option} {path} holds no samples.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{option} {path} contains NaN or Inf values.")
    if events and ((x < 0).any() or (x != np.round(x)).any()):
        bad = x[(x < 0) | (x != np.round(x))].flat[0]
        raise UserError(f"{option} {path} holds {bad:g}, which is not an event count; this model takes event "
                        "frames (non-negative integers).")
    return x


def load_inputs(path: Path, option: str, model, arch: str) -> np.ndarray:
    """Inputs of `model`: its per-sample shape, and event frames for TCJA models (convert.py: graded input)."""

    return load_npy(path, option, tuple(model.input_shape), events=get_arch(arch).reads_events)


class ArraySamples:
    """Evaluation samples held in memory (the demo data, an .npz): `batch(start, stop)` → (x float32, y int64)."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[start:stop], self.y[start:stop]

    def fingerprint(self) -> str:
        """What identifies the samples for `--resume`: a hash of their bytes."""
        return hashlib.sha256(np.ascontiguousarray(self.x).tobytes() + np.ascontiguousarray(self.y).tobytes()
                              ).hexdigest()


class DatasetSamples:
    """The first `count` samples of an official data set, decoded a batch at a time when `batch` asks for them:
    memory holds one batch, whatever the data set's size."""

    def __init__(self, spec: str, dataset, count: int):
        self.spec, self.dataset, self.count = spec, dataset, count

    def __len__(self) -> int:
        return self.count

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            return datasets.read_samples(self.dataset, start, min(stop, self.count))
        except datasets.DatasetError as e:
            raise UserError(f"--data {self.spec}: {e}.") from None

    def fingerprint(self) -> str:
        """What identifies the samples for `--resume`: the data set, its folder and how many (decoding every sample
        to hash it would cost a pass over the data)."""
        name, root = self.spec.split(":", 1)
        return hashlib.sha256(f"{name}|{Path(root).resolve()}|{self.count}".encode()).hexdigest()


def evaluation_samples(spec: str, arch: str, limit: int | None = None):
    """`--data`: "digits" (the demo models' data), "NAME:ROOT" (an official data set, e.g. cifar10:/data/cifar,
    read batch by batch), or an .npz holding `x` and `y` (and optionally `calibration`). → (ArraySamples or
    DatasetSamples, calibration inputs)."""
    if spec == "digits":
        kind = get_arch(arch).demo_data
        if kind is None:
            raise UserError(f"--data digits only fits the demo models (tcja-tiny, gac-msresnet-tiny), not {arch}.")
        x, y = DEMO_DATA[kind]("test")
        return ArraySamples(x[:limit], y[:limit]), DEMO_DATA[kind]("train")[0][:CALIBRATION_SAMPLES]
    if ":" in spec and spec.split(":", 1)[0] in datasets.DATASETS:
        name, root = spec.split(":", 1)
        try:
            test = datasets.open_dataset(name, root, "test")
            count = len(test) if limit is None else min(limit, len(test))
            if count == 0:
                raise datasets.DatasetError(f"{root}: no test samples of {name} found")
            calibration, _ = datasets.load_arrays(name, root, "train", CALIBRATION_SAMPLES)
        except datasets.DatasetError as e:
            raise UserError(f"--data {spec}: {e}.") from None
        return DatasetSamples(spec, test, count), calibration
    path = Path(spec)
    if path.suffix != ".npz" or not path.is_file():
        raise UserError(f"--data {spec}: expected 'digits', NAME:ROOT with NAME one of "
                        f"{', '.join(datasets.DATASETS)}, or an existing .npz with arrays x and y.")
    with np.load(path, allow_pickle=False) as f:
        if "x" not in f or "y" not in f:
            raise UserError(f"--data {path} must hold arrays 'x' and 'y'.")
        x, y = f["x"].astype(np.float32)[:limit], f["y"].astype(np.int64)[:limit]
        calibration = f["calibration"].astype(np.float32) if "calibration" in f else x[:CALIBRATION_SAMPLES]
    return ArraySamples(x, y), calibration


def evaluation_data(spec: str, arch: str, limit: int | None = None):
    """`evaluation_samples` read whole → (x, y, calibration inputs)."""
    samples, calibration = evaluation_samples(spec, arch, limit)
    return *samples.batch(0, len(samples)), calibration
