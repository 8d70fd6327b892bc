"""Loaders for the official data sets, read from local files in their original release formats (never downloaded).

Each data set is a small class with ``len(ds)`` and ``ds[i] -> (np.ndarray, int)``, giving the arrays the official
training code feeds the models; :func:`load_arrays` stacks the first samples for the CLI.

================  ============================================  ==========================================
name              local files                                   sample
================  ============================================  ==========================================
dvs128_gesture    ``DvsGesture/userXX_<light>.aedat`` (AEDAT     ``[T, 2, 128, 128]`` float32 counts, T=20
                  3.1) + ``_labels.csv`` + ``trials_to_*.txt``
cifar10_dvs       ``<class>/*.aedat`` (AEDAT 2.0, jAER DVS128)  ``[T, 2, 128, 128]`` float32 counts, T=10
ncaltech101       ``Caltech101/<class>/image_XXXX.bin`` (ATIS)  ``[T, 2, 180, 240]`` float32 counts, T=14
cifar10/cifar100  ``cifar-10-batches-bin/*.bin``,               ``[3, 32, 32]`` float32, normalised
                  ``cifar-100-binary/{train,test}.bin``
imagenet          ``train|val/<wnid>/*.JPEG``                   ``[3, 224, 224]`` float32, normalised
================  ============================================  ==========================================

Sources of the facts: ridgerchu/TCJA ``src/dvs128.py``, ``src/cifar10dvs.py``, ``src/caltech101.py`` and the
SpikingJelly copy it trains with (``src/spikingjelly/datasets/``); bollossom/GAC ``CODE/CIFAR/data_loaders.py`` and
``CODE/ImageNet/utils.py``. The default T values are the ones TCJA's models are built for (its TCJA layers take T).
Event data sets become frames as SpikingJelly's ``data_type='frame', split_by='number'`` does: :func:`events_to_frames`.
"""
import itertools
import math
import re
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image


class DatasetError(ValueError):
    """A data set's files are missing or malformed; the message names the path."""


class Events(NamedTuple):
    """One recording, in file order: timestamps (µs, int64), pixel coordinates, polarity 0/1."""
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def events_to_frames(events: Events, frames: int, height: int, width: int) -> np.ndarray:
    """Integrate events into ``[frames, 2, height, width]`` float32 event counts.

    SpikingJelly's ``integrate_events_by_fixed_frames_number`` with ``split_by='number'``: with N events and
    ``d = N // frames``, frame j holds events ``[j*d, (j+1)*d)`` and the last frame holds ``[(frames-1)*d, N)``, so
    it also takes the remainder (all events, when N < frames). Channel 0 counts events with p == 0, channel 1 the
    others; a pixel's value is its number of events. Timestamps play no part.
    """
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    x = np.asarray(events.x, np.int64)
    y = np.asarray(events.y, np.int64)
    channel = (np.asarray(events.p) != 0).astype(np.int64)
    n = x.size
    if n and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise ValueError(f"event coordinates x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}] "
                         f"fall outside the {width}x{height} frame")
    step = n // frames
    frame = np.minimum(np.arange(n) // step, frames - 1) if step else np.full(n, frames - 1)
    flat = ((frame * 2 + channel) * height + y) * width + x
    counts = np.bincount(flat, minlength=frames * 2 * height * width)
    return counts.reshape(frames, 2, height, width).astype(np.float32)


# ---------------------------------------------------------------------------------------------- event file readers

def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror or err}") from None


def _text_header_end(data: bytes, path: Path, version: str) -> int:
    """Offset just past the '#' lines that open jAER/cAER files ('#!AER-DAT<version>' first, for AEDAT 3 also
    '#!END-HEADER' last). AEDAT 3 needs the version line to find the binary part; AEDAT 2 files are only refused
    when they declare another version."""
    declared = re.match(rb"#!AER-DAT(\d)", data)
    if (declared is None and version == "3") or (declared and declared.group(1).decode() != version):
        found = data[:data.find(b"\n")].strip()[:40].decode("latin-1") if declared else "no '#!AER-DAT' line"
        raise DatasetError(f"{path}: expected an AEDAT {version} file, found {found!r}")
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        if end < 0:
            raise DatasetError(f"{path}: the text header never ends")
        line, pos = data[pos:end].rstrip(b"\r"), end + 1
        if line == b"#!END-HEADER":
            break
    return pos


# libcaer's caer_event_packet_header: eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow,
# eventCapacity, eventNumber, eventValid (little-endian).
_AEDAT3_PACKET = struct.Struct("<HHIIIIII")
_AEDAT3_POLARITY = 1


def read_aedat31(path) -> Events:
    """Polarity events of an AEDAT 3.1 file (DVS128 Gesture).

    After the text header come packets: a 28-byte header (see ``_AEDAT3_PACKET``) and ``eventCapacity *
    eventSize`` bytes. Packets of type 1 hold polarity events, each a little-endian uint32 address (bit 1 polarity,
    bits 2-16 y, bits 17-31 x) and a uint32 timestamp whose high part is ``eventTSOverflow << 31``. Other packet
    types are skipped. As SpikingJelly does, every event of the capacity is kept (the valid bit is not checked).
    """
    data = _read_bytes(path)
    pos = _text_header_end(data, path, "3")
    addresses, stamps = [], []
    while pos < len(data):
        if pos + _AEDAT3_PACKET.size > len(data):
            raise DatasetError(f"{path}: truncated packet header at byte {pos}")
        kind, _, size, _, overflow, capacity, _, _ = _AEDAT3_PACKET.unpack_from(data, pos)
        body, pos = pos + _AEDAT3_PACKET.size, pos + _AEDAT3_PACKET.size + capacity * size
        if pos > len(data):
            raise DatasetError(f"{path}: packet at byte {body - _AEDAT3_PACKET.size} is truncated")
        if kind != _AEDAT3_POLARITY:
            continue
        if size < 8:
            raise DatasetError(f"{path}: polarity packet at byte {body - _AEDAT3_PACKET.size} has {size}-byte events")
        record = np.dtype({"names": ["address", "t"], "formats": ["<u4", "<u4"], "offsets": [0, 4], "itemsize": size})
        events = np.frombuffer(data, record, count=capacity, offset=body)
        addresses.append(events["address"])
        stamps.append(events["t"].astype(np.int64) | (overflow << 31))
    address = np.concatenate(addresses) if addresses else np.zeros(0, np.uint32)
    t = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
    return Events(t=t, x=((address >> 17) & 0x7FFF).astype(np.uint16), y=((address >> 2) & 0x7FFF).astype(np.uint16),
                  p=((address >> 1) & 1).astype(np.uint8))


def read_cifar10dvs_aedat(path) -> Events:
    """Events of a CIFAR10-DVS recording: AEDAT 2.0 (jAER) with the DVS128 address layout.

    After the '#' header lines: big-endian uint32 pairs (address, timestamp µs). Address bit 0 is the polarity,
    bits 1-7 the sensor x, bits 8-14 the sensor y. SpikingJelly (which TCJA trains with) then rotates and flips:
    ``x = 127 - y_sensor``, ``y = 127 - x_sensor``, ``p = 1 - polarity_bit``; so do we.
    """
    data = _read_bytes(path)
    start = _text_header_end(data, path, "2")
    if (len(data) - start) % 8:
        raise DatasetError(f"{path}: {len(data) - start} bytes of events is not a whole number of 8-byte events")
    words = np.frombuffer(data, ">u4", offset=start).reshape(-1, 2)
    address = words[:, 0]
    sensor_x, sensor_y = (address >> 1) & 0x7F, (address >> 8) & 0x7F
    return Events(t=words[:, 1].astype(np.int64), x=(127 - sensor_y).astype(np.uint16),
                  y=(127 - sensor_x).astype(np.uint16), p=(1 - (address & 1)).astype(np.uint8))


def read_ncaltech_bin(path) -> Events:
    """Events of an N-Caltech101 (ATIS) ``.bin`` file: no header, 40 bits per event, big-endian fields:
    byte 0 x, byte 1 y, bit 7 of byte 2 polarity (1 ON, 0 OFF), the remaining 23 bits the timestamp in µs."""
    raw = np.frombuffer(_read_bytes(path), np.uint8)
    if raw.size % 5:
        raise DatasetError(f"{path}: {raw.size} bytes is not a whole number of 5-byte events")
    event = raw.reshape(-1, 5).astype(np.int64)
    t = ((event[:, 2] & 0x7F) << 16) | (event[:, 3] << 8) | event[:, 4]
    return Events(t=t, x=event[:, 0].astype(np.uint16), y=event[:, 1].astype(np.uint16),
                  p=(event[:, 2] >> 7).astype(np.uint8))


# ---------------------------------------------------------------------------------------------- shared helpers

def _check_split(split: str, allowed: tuple, name: str) -> str:
    if split not in allowed:
        raise DatasetError(f"{name} has no split {split!r}; use one of {', '.join(allowed)}")
    return split


def _locate(root, subdirs: tuple, accept, what: str) -> Path:
    """The first of ``root/sub`` that ``accept`` takes: users point at the release folder or at a parent of it
    (e.g. SpikingJelly's ``extract/``)."""
    root = Path(root)
    for sub in subdirs:
        if (root / sub).is_dir() and accept(root / sub):
            return root / sub
    looked = ", ".join(str(root / sub) for sub in subdirs)
    raise DatasetError(f"{root}: no {what} found (looked in {looked})")


def _interleave(groups: list) -> list:
    """Round-robin over per-class lists, so that the first samples of a split cover many classes."""
    return [item for row in itertools.zip_longest(*groups) for item in row if item is not None]


def _split_class_folders(class_dirs: list, suffix: str, split: str, train_ratio: float) -> list:
    """``(path, label)`` of one split of a class-folder data set that has no official split.

    TCJA calls SpikingJelly's ``split_to_train_test_set(0.9, dataset, num_classes)``: the first
    ``ceil(0.9 * n)`` samples of each class go to train, the rest to test, in DatasetFolder's order, which sorts
    the converted ``<stem>.npz`` names as strings (so ``x_10`` comes before ``x_2``).
    """
    per_class = []
    for label, folder in class_dirs:
        files = sorted(folder.glob("*" + suffix), key=lambda f: f.stem + ".npz")
        cut = math.ceil(len(files) * train_ratio)
        chosen = {"train": files[:cut], "test": files[cut:], "all": files}[split]
        per_class.append([(f, label) for f in chosen])
    return _interleave(per_class)


class _EventFrames:
    """Shared by the event data sets: subclasses set ``labels`` and ``_events(index) -> (Events, source)``."""
    height = width = 128
    labels: list

    def __init__(self, frames: int):
        if not isinstance(frames, (int, np.integer)) or frames < 1:
            raise DatasetError(f"frames must be a positive integer, got {frames!r}")
        self.frames = int(frames)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple:
        index = range(len(self))[index]
        events, source = self._events(index)
        try:
            return events_to_frames(events, self.frames, self.height, self.width), self.labels[index]
        except ValueError as err:
            raise DatasetError(f"{source}: {err}") from None


# ---------------------------------------------------------------------------------------------- event data sets

# SpikingJelly saves gesture class c (1..11 in the csv) under the folder str(c - 1), and torchvision's DatasetFolder
# numbers folders in string order '0', '1', '10', '2', ..., '9': TCJA's checkpoints learned those indices.
_SPIKINGJELLY_GESTURE_FOLDERS = sorted(str(c) for c in range(11))


def _read_gesture_csv(path: Path) -> list:
    """Rows ``(class 1..11, startTime_usec, endTime_usec)`` of a DvsGesture ``_labels.csv`` (one header line)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err.strerror or err}") from None
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            gesture, start, end = (int(v) for v in line.split(","))
        except ValueError:
            raise DatasetError(f"{path}, line {number}: expected 'class,startTime_usec,endTime_usec', "
                               f"got {line!r}") from None
        if not 1 <= gesture <= 11:
            raise DatasetError(f"{path}, line {number}: gesture class {gesture} is not in 1..11")
        rows.append((gesture, start, end))
    return rows


class DVS128Gesture(_EventFrames):
    """DVS128 Gesture from the original release: ``root`` is ``DvsGesture/`` or a folder holding it (or holding
    ``extract/DvsGesture``, SpikingJelly's layout).

    ``trials_to_{split}.txt`` lists the recordings; each ``<name>_labels.csv`` row is one sample: the events with
    ``startTime_usec <= t < endTime_usec`` (SpikingJelly's cut), integrated into ``frames`` frames. Samples come in
    file order, then row order. ``label_order='spikingjelly'`` (default) gives the indices TCJA's checkpoints were
    trained with: csv class 1 -> 0, 2 -> 1, 11 ("other") -> 2, c -> c for 3..10 (see
    ``_SPIKINGJELLY_GESTURE_FOLDERS``); ``'gesture'`` gives csv class - 1.
    """

    def __init__(self, root, split: str = "test", frames: int = 20, label_order: str = "spikingjelly"):
        super().__init__(frames)
        _check_split(split, ("train", "test"), "DVS128 Gesture")
        if label_order not in ("spikingjelly", "gesture"):
            raise DatasetError(f"label_order must be 'spikingjelly' or 'gesture', got {label_order!r}")
        folder = _locate(root, (".", "DvsGesture", "extract/DvsGesture"),
                         lambda d: (d / "trials_to_test.txt").is_file(), "DvsGesture folder (trials_to_test.txt)")
        trials = folder / f"trials_to_{split}.txt"
        try:
            names = [line.strip() for line in trials.read_text().splitlines() if line.strip()]
        except OSError as err:
            raise DatasetError(f"cannot read {trials}: {err.strerror or err}") from None
        self._samples, self.labels = [], []
        for name in names:
            recording = folder / name
            if not recording.is_file():
                raise DatasetError(f"{recording} (listed in {trials}) is missing")
            for gesture, start, end in _read_gesture_csv(folder / (recording.stem + "_labels.csv")):
                self._samples.append((recording, start, end))
                self.labels.append(gesture - 1 if label_order == "gesture"
                                   else _SPIKINGJELLY_GESTURE_FOLDERS.index(str(gesture - 1)))
        self._decoded = (None, None)  # one recording holds ~11 consecutive samples: decode it once

    def _events(self, index: int) -> tuple:
        recording, start, end = self._samples[index]
        if self._decoded[0] != recording:
            self._decoded = (recording, read_aedat31(recording))
        events = self._decoded[1]
        keep = (events.t >= start) & (events.t < end)
        return Events(*(a[keep] for a in events)), f"{recording} [{start}, {end}) µs"


def _adaptive_average_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Row i averages torch AdaptiveAvgPool's bin ``[floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))``."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        matrix[i, lo:hi] = 1.0 / (hi - lo)
    return matrix


class CIFAR10DVS(_EventFrames):
    """CIFAR10-DVS from the original release: ``root`` holds the class folders (``airplane/`` .. ``truck/``, each
    with ``.aedat`` files) directly or under ``extract/``. Labels follow ``CLASSES``.

    There is no official split: ``split`` 'train'/'test' is TCJA's 90/10 per-class cut (``train_ratio``), 'all' is
    everything; samples are interleaved across classes. TCJA's VGG starts with ``AdaptiveAvgPool2d(48)`` on the
    128x128 frames; ``size=48`` applies that pooling here instead, for a model built without that layer. (TCJA's
    training script also applies random flips/rolls to its test set; nothing random is done here.)
    """
    CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root, split: str = "test", frames: int = 10, train_ratio: float = 0.9, size: int | None = None):
        super().__init__(frames)
        _check_split(split, ("train", "test", "all"), "CIFAR10-DVS")
        folder = _locate(root, (".", "extract"), lambda d: any((d / c).is_dir() for c in self.CLASSES),
                         "CIFAR10-DVS class folders (airplane/, automobile/, ...)")
        class_dirs = [(label, folder / c) for label, c in enumerate(self.CLASSES) if (folder / c).is_dir()]
        self._samples = _split_class_folders(class_dirs, ".aedat", split, train_ratio)
        self.labels = [label for _, label in self._samples]
        self._pool = None if size is None else (_adaptive_average_matrix(self.height, size),
                                                _adaptive_average_matrix(self.width, size))

    def _events(self, index: int) -> tuple:
        path = self._samples[index][0]
        return read_cifar10dvs_aedat(path), path

    def __getitem__(self, index: int) -> tuple:
        frames, label = super().__getitem__(index)
        if self._pool is not None:
            rows, cols = self._pool
            frames = (rows @ frames @ cols.T).astype(np.float32)
        return frames, label


class NCaltech101(_EventFrames):
    """N-Caltech101 from the original release: ``root`` is ``Caltech101/`` (101 class folders of ``.bin`` files,
    including BACKGROUND_Google) or a folder holding it (or ``extract/Caltech101``). Labels index the class folders
    sorted as strings, as DatasetFolder does; frames are 180x240 (SpikingJelly's size, which TCJA's 512*5*7 linear
    layer expects), not resized.

    There is no official split: 'train'/'test' is TCJA's 90/10 per-class cut (``train_ratio``), 'all' is everything;
    samples are interleaved across classes.
    """
    height, width = 180, 240
    NUM_CLASSES = 101

    def __init__(self, root, split: str = "test", frames: int = 14, train_ratio: float = 0.9):
        super().__init__(frames)
        _check_split(split, ("train", "test", "all"), "N-Caltech101")
        folder = _locate(root, ("Caltech101", "extract/Caltech101", "."),
                         lambda d: any(any(c.glob("*.bin")) for c in d.iterdir() if c.is_dir()),
                         "N-Caltech101 class folders of .bin files")
        self.classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if len(self.classes) != self.NUM_CLASSES:
            raise DatasetError(f"{folder}: found {len(self.classes)} class folders, N-Caltech101 has "
                               f"{self.NUM_CLASSES}; labels would not match a trained model")
        class_dirs = [(label, folder / c) for label, c in enumerate(self.classes)]
        self._samples = _split_class_folders(class_dirs, ".bin", split, train_ratio)
        self.labels = [label for _, label in self._samples]

    def _events(self, index: int) -> tuple:
        path = self._samples[index][0]
        return read_ncaltech_bin(path), path


# ---------------------------------------------------------------------------------------------- image data sets

def _normalise(chw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """torchvision's ToTensor then Normalize, in float32 as torch computes them: ``(v / 255 - mean) / std``."""
    return (chw.astype(np.float32) / np.float32(255) - mean[:, None, None]) / std[:, None, None]


class CIFAR10:
    """CIFAR-10, binary version: ``root`` is ``cifar-10-batches-bin/`` or a folder holding it.

    Records of 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue; rows of 32). Train is
    ``data_batch_1..5.bin`` in order, test ``test_batch.bin``. Samples ``[3, 32, 32]`` float32 normalised with GAC's
    mean/std (its test transform: ToTensor + Normalize, no augmentation).
    """
    FOLDER = "cifar-10-batches-bin"
    FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
    LABEL_BYTES = 1  # the label used is the last one
    NUM_CLASSES = 10
    MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
    STD = np.array([0.2023, 0.1994, 0.2010], np.float32)

    def __init__(self, root, split: str = "test"):
        _check_split(split, tuple(self.FILES), type(self).__name__)
        folder = _locate(root, (self.FOLDER, "."), lambda d: any((d / f).is_file() for fs in self.FILES.values()
                                                                 for f in fs), f"{self.FOLDER} files")
        record = self.LABEL_BYTES + 3 * 32 * 32
        self._records = []
        for name in self.FILES[split]:
            path = folder / name
            if not path.is_file():
                raise DatasetError(f"{path} is missing")
            size = path.stat().st_size
            if size == 0 or size % record:
                raise DatasetError(f"{path}: {size} bytes is not a whole number of {record}-byte records "
                                   f"(is it the {type(self).__name__} binary version?)")
            records = np.memmap(path, np.uint8, mode="r").reshape(-1, record)
            labels = records[:, self.LABEL_BYTES - 1]
            if labels.max() >= self.NUM_CLASSES:
                bad = int(np.argmax(labels >= self.NUM_CLASSES))
                raise DatasetError(f"{path}: record {bad} has label {labels[bad]}, not below {self.NUM_CLASSES}")
            self._records.append(records)
        self._starts = np.cumsum([0] + [len(r) for r in self._records])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> tuple:
        index = range(len(self))[index]
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        record = self._records[part][index - self._starts[part]]
        image = record[self.LABEL_BYTES:].reshape(3, 32, 32)
        return _normalise(image, self.MEAN, self.STD), int(record[self.LABEL_BYTES - 1])


class CIFAR100(CIFAR10):
    """CIFAR-100, binary version: ``cifar-100-binary/{train,test}.bin``, records of a coarse and a fine label byte
    + 3072 pixel bytes. The label is the fine one (as torchvision's CIFAR100, which GAC uses), with GAC's
    CIFAR-100 mean/std."""
    FOLDER = "cifar-100-binary"
    FILES = {"train": ("train.bin",), "test": ("test.bin",)}
    LABEL_BYTES = 2
    NUM_CLASSES = 100
    MEAN = np.array([0.5071, 0.4867, 0.4408], np.float32)
    STD = np.array([0.2675, 0.2565, 0.2761], np.float32)


# torchvision's IMG_EXTENSIONS, matched case-insensitively as ImageFolder does
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size)`` on a PIL image: shorter side to ``size``, longer side
    ``int(size * long / short)``, PIL bilinear; unchanged when already that size."""
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return image if new == (w, h) else image.resize(new, Image.Resampling.BILINEAR)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision ``CenterCrop(size)`` for an image at least ``size`` on both sides: its offsets use Python's
    round(), which rounds halves to even (an odd margin of 117 gives offset 58)."""
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


class ImageNet:
    """An ImageNet folder: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (``split='test'`` means val).

    Labels index the 1000 wnid folders sorted, as ImageFolder does. Every sample gets GAC's evaluation transform:
    RGB, Resize(256), CenterCrop(224), ToTensor, Normalize(ImageNet mean/std) -> ``[3, 224, 224]`` float32.
    Samples are interleaved across classes.
    """
    NUM_CLASSES = 1000
    MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    STD = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, root, split: str = "val"):
        _check_split(split, ("train", "val", "test"), "ImageNet")
        folder = Path(root) / ("val" if split == "test" else split)
        if not folder.is_dir():
            raise DatasetError(f"{folder} is missing (expected {Path(root)}/{{train,val}}/<wnid>/*.JPEG)")
        self.classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if len(self.classes) != self.NUM_CLASSES:
            raise DatasetError(f"{folder}: found {len(self.classes)} class folders, ImageNet has "
                               f"{self.NUM_CLASSES}; labels would not match a trained model")
        self._samples = _interleave([
            [(f, label) for f in sorted((folder / wnid).rglob("*")) if f.suffix.lower() in _IMAGE_SUFFIXES]
            for label, wnid in enumerate(self.classes)])

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> tuple:
        path, label = self._samples[range(len(self))[index]]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read image {path}: {err}") from None
        pixels = np.asarray(_center_crop(_resize_shorter_side(rgb, 256), 224))
        return _normalise(pixels.transpose(2, 0, 1), self.MEAN, self.STD), label


# ---------------------------------------------------------------------------------------------- entry points

DATASETS = {
    "dvs128_gesture": DVS128Gesture,
    "cifar10_dvs": CIFAR10DVS,
    "ncaltech101": NCaltech101,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "imagenet": ImageNet,
}


def open_dataset(name: str, root, split: str = "test", **options):
    """The data set ``name`` (a key of ``DATASETS``) at ``root``; ``options`` go to its class (e.g. ``frames``)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; use one of {', '.join(DATASETS)}")
    if not Path(root).is_dir():
        raise DatasetError(f"data set folder {root} does not exist")
    return DATASETS[name](root, split=split, **options)


def load_arrays(name: str, root, split: str = "test", limit: int | None = None, **options) -> tuple:
    """``(X, y)``: the first ``limit`` samples (all if None) of a split stacked, ``y`` int64."""
    dataset = open_dataset(name, root, split, **options)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count <= 0:
        raise DatasetError(f"{root}: no {split} samples of {name} found" if len(dataset) == 0
                           else f"limit must be positive, got {limit}")
    return read_samples(dataset, 0, count)


def read_samples(dataset, start: int, stop: int) -> tuple:
    """``(X, y)``: samples ``start`` to ``stop`` (excluded) of ``dataset`` stacked, ``y`` int64."""
    samples = [dataset[i] for i in range(start, stop)]
    return np.stack([x for x, _ in samples]), np.array([y for _, y in samples], np.int64)
