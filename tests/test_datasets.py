"""Data set loaders on tiny files written in each release's real on-disk format, with hand-computed expectations."""
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from snn2hw.models.datasets import (
    CIFAR10, CIFAR10DVS, DVS128Gesture, DatasetError, Events, ImageNet, NCaltech101, events_to_frames, load_arrays,
    open_dataset, read_aedat31, read_cifar10dvs_aedat, read_ncaltech_bin)

# ---------------------------------------------------------------------------------------------- file writers

AEDAT31_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"


def aedat31_packet(kind: int, overflow: int, events) -> bytes:
    """A cAER packet of 8-byte events; polarity events are (x, y, p, t), other kinds raw (word, word)."""
    if kind == 1:
        words = [((x << 17) | (y << 2) | (p << 1) | 1, t) for x, y, p, t in events]
    else:
        words = events
    n = len(words)
    header = struct.pack("<HHIIIIII", kind, 1, 8, 4, overflow, n, n, n)
    return header + b"".join(struct.pack("<II", a, b) for a, b in words)


def cifar10dvs_file(path, events, header=b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"):
    """AEDAT 2.0: big-endian (address, timestamp); events are sensor (x, y, polarity bit, t, extra address bits)."""
    body = b"".join(struct.pack(">II", extra | (y << 8) | (x << 1) | pol, t) for x, y, pol, t, extra in events)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body)


def ncaltech_file(path, events):
    """ATIS .bin: 5 bytes per (x, y, p, t)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF]) for x, y, p, t in events))


def cifar_record(labels, planes) -> bytes:
    return bytes(labels) + np.asarray(planes, np.uint8).tobytes()


# ---------------------------------------------------------------------------------------------- integrator

def test_events_to_frames_equal_counts_last_frame_takes_remainder():
    # 7 events into 3 frames: 7 // 3 = 2 per frame, the last frame takes events 4, 5, 6
    x = np.array([0, 0, 1, 2, 0, 0, 3])
    y = np.array([0, 0, 0, 1, 1, 1, 2])
    p = np.array([0, 0, 1, 0, 1, 1, 0])
    frames = events_to_frames(Events(np.arange(7), x, y, p), frames=3, height=3, width=4)
    expected = np.zeros((3, 2, 3, 4), np.float32)
    expected[0, 0, 0, 0] = 2
    expected[1, 1, 0, 1] = 1
    expected[1, 0, 1, 2] = 1
    expected[2, 1, 1, 0] = 2
    expected[2, 0, 2, 3] = 1
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, expected)


def test_events_to_frames_fewer_events_than_frames_and_none():
    frames = events_to_frames(Events(np.arange(2), np.array([1, 1]), np.array([0, 0]), np.array([1, 1])), 4, 2, 2)
    expected = np.zeros((4, 2, 2, 2), np.float32)
    expected[3, 1, 0, 1] = 2
    np.testing.assert_array_equal(frames, expected)
    empty = np.zeros(0, np.int64)
    assert not events_to_frames(Events(empty, empty, empty, empty), 3, 2, 2).any()


def test_events_to_frames_rejects_events_outside_the_frame():
    with pytest.raises(ValueError, match="outside the 4x3 frame"):
        events_to_frames(Events(np.arange(1), np.array([4]), np.array([0]), np.array([0])), 1, 3, 4)


# ---------------------------------------------------------------------------------------------- DVS128 Gesture

def test_read_aedat31_decodes_polarity_packets_and_skips_others(tmp_path):
    path = tmp_path / "user01_led.aedat"
    path.write_bytes(AEDAT31_HEADER
                     + aedat31_packet(1, 0, [(127, 0, 1, 10), (0, 127, 0, 20), (5, 6, 1, 0x7FFFFFFF)])
                     + aedat31_packet(0, 0, [(0xDEADBEEF, 15)])
                     + aedat31_packet(1, 1, [(1, 2, 0, 3)]))
    events = read_aedat31(path)
    np.testing.assert_array_equal(events.x, [127, 0, 5, 1])
    np.testing.assert_array_equal(events.y, [0, 127, 6, 2])
    np.testing.assert_array_equal(events.p, [1, 0, 1, 0])
    np.testing.assert_array_equal(events.t, [10, 20, 0x7FFFFFFF, (1 << 31) | 3])


def test_read_aedat31_reports_bad_files(tmp_path):
    wrong = tmp_path / "wrong.aedat"
    wrong.write_bytes(b"#!AER-DAT2.0\r\n" + bytes(8))
    with pytest.raises(DatasetError, match="wrong.aedat.*AEDAT 3"):
        read_aedat31(wrong)
    truncated = tmp_path / "truncated.aedat"
    truncated.write_bytes(AEDAT31_HEADER + aedat31_packet(1, 0, [(1, 1, 1, 1), (2, 2, 0, 2)])[:-3])
    with pytest.raises(DatasetError, match="truncated.aedat.*truncated"):
        read_aedat31(truncated)
    with pytest.raises(DatasetError, match="missing.aedat"):
        read_aedat31(tmp_path / "missing.aedat")


def write_gesture_release(folder):
    folder.mkdir(parents=True)
    (folder / "trials_to_test.txt").write_text("user01_led.aedat\r\n\r\n")
    (folder / "trials_to_train.txt").write_text("user02_led.aedat\n")
    (folder / "user01_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n11,100,200\n4,200,300\n")
    (folder / "user01_led.aedat").write_bytes(AEDAT31_HEADER + aedat31_packet(1, 0, [
        (9, 9, 1, 50),  # before the first gesture
        (1, 2, 1, 100), (1, 2, 1, 120), (3, 4, 0, 150), (127, 127, 1, 199),  # class 11
        (0, 0, 0, 200), (0, 0, 0, 250),  # class 4
        (9, 9, 0, 300),  # endTime is exclusive
    ]))


def test_dvs128_gesture_cuts_samples_by_csv_and_integrates(tmp_path):
    write_gesture_release(tmp_path / "extract" / "DvsGesture")
    dataset = DVS128Gesture(tmp_path, split="test", frames=2)
    assert len(dataset) == 2
    first, label = dataset[0]
    expected = np.zeros((2, 2, 128, 128), np.float32)
    expected[0, 1, 2, 1] = 2
    expected[1, 0, 4, 3] = 1
    expected[1, 1, 127, 127] = 1
    assert label == 2  # gesture 11 is SpikingJelly folder '10', third in string order
    np.testing.assert_array_equal(first, expected)
    second, label = dataset[1]
    expected = np.zeros((2, 2, 128, 128), np.float32)
    expected[:, 0, 0, 0] = 1
    assert label == 4
    np.testing.assert_array_equal(second, expected)
    assert DVS128Gesture(tmp_path, frames=2, label_order="gesture").labels == [10, 3]


def test_dvs128_gesture_label_orders_for_all_classes(tmp_path):
    folder = tmp_path / "DvsGesture"
    write_gesture_release(folder)
    rows = "".join(f"{c},{c * 10},{c * 10 + 5}\n" for c in range(1, 12))
    (folder / "user01_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)
    assert DVS128Gesture(folder).labels == [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 2]
    assert DVS128Gesture(folder, label_order="gesture").labels == list(range(11))


def test_dvs128_gesture_names_missing_or_malformed_files(tmp_path):
    folder = tmp_path / "DvsGesture"
    write_gesture_release(folder)
    with pytest.raises(DatasetError, match="user02_led.aedat.*trials_to_train.txt"):
        DVS128Gesture(tmp_path, split="train")
    (folder / "user01_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n4;200;300\n")
    with pytest.raises(DatasetError, match="user01_led_labels.csv, line 2"):
        DVS128Gesture(tmp_path)
    with pytest.raises(DatasetError, match="trials_to_test.txt"):
        DVS128Gesture(tmp_path / "elsewhere")


# ---------------------------------------------------------------------------------------------- CIFAR10-DVS

def test_read_cifar10dvs_aedat_applies_spikingjelly_axes(tmp_path):
    path = tmp_path / "cifar10_cat_0.aedat"
    cifar10dvs_file(path, [(0, 0, 0, 5, 0), (127, 0, 1, 6, 1 << 15), (3, 100, 1, 2**32 - 1, 0)])
    events = read_cifar10dvs_aedat(path)
    np.testing.assert_array_equal(events.x, [127, 127, 27])  # 127 - sensor y
    np.testing.assert_array_equal(events.y, [127, 0, 124])  # 127 - sensor x
    np.testing.assert_array_equal(events.p, [1, 0, 0])  # 1 - polarity bit
    np.testing.assert_array_equal(events.t, [5, 6, 2**32 - 1])


def test_read_cifar10dvs_aedat_reports_bad_files(tmp_path):
    odd = tmp_path / "odd.aedat"
    cifar10dvs_file(odd, [(1, 1, 1, 1, 0)])
    odd.write_bytes(odd.read_bytes() + b"\0")
    with pytest.raises(DatasetError, match="odd.aedat.*8-byte events"):
        read_cifar10dvs_aedat(odd)
    v3 = tmp_path / "v3.aedat"
    v3.write_bytes(AEDAT31_HEADER)
    with pytest.raises(DatasetError, match="v3.aedat.*AEDAT 2"):
        read_cifar10dvs_aedat(v3)


def write_cifar10dvs(root):
    """One event per file at sensor x = k: decoded pixel (y=127-k, x=127), channel 1."""
    for k in (0, 1, 2, 10):
        cifar10dvs_file(root / "airplane" / f"cifar10_airplane_{k}.aedat", [(k, 0, 0, 1, 0)])
    for k in (20, 21):
        cifar10dvs_file(root / "truck" / f"cifar10_truck_{k - 20}.aedat", [(k, 0, 0, 1, 0)])


def test_cifar10dvs_split_is_tcja_per_class_cut_in_string_order(tmp_path):
    write_cifar10dvs(tmp_path / "extract")
    dataset = CIFAR10DVS(tmp_path, split="test", frames=1, train_ratio=0.5)
    # airplane sorts _0, _1, _10, _2: train the first ceil(4 * 0.5) = 2; truck: train _0 only
    samples = [dataset[i] for i in range(len(dataset))]
    assert [label for _, label in samples] == [0, 9, 0]
    rows = [int(np.flatnonzero(frames[0, 1, :, 127])[0]) for frames, _ in samples]
    assert rows == [127 - 10, 127 - 21, 127 - 2]
    assert all(frames.sum() == 1 and frames.shape == (1, 2, 128, 128) for frames, _ in samples)
    assert len(CIFAR10DVS(tmp_path, split="train", train_ratio=0.5)) == 3
    assert len(CIFAR10DVS(tmp_path, split="all")) == 6


def test_cifar10dvs_pooling_matches_tcja_adaptive_avg_pool(tmp_path):
    root = tmp_path / "cifar"
    rng = np.random.default_rng(0)
    events = [(int(x), int(y), int(p), i, 0) for i, (x, y, p) in enumerate(rng.integers(0, [128, 128, 2], (500, 3)))]
    cifar10dvs_file(root / "dog" / "cifar10_dog_0.aedat", events + [(0, 0, 0, 999, 0)])
    full, _ = CIFAR10DVS(root, split="all", frames=3)[0]
    pooled, label = CIFAR10DVS(root, split="all", frames=3, size=48)[0]
    assert label == 5 and pooled.shape == (3, 2, 48, 48) and pooled.dtype == np.float32
    reference = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(full), 48).numpy()
    np.testing.assert_allclose(pooled, reference, rtol=1e-6, atol=1e-6)
    # one event at sensor (0, 0) is pixel (127, 127): only output bin 47 (rows/cols 125..127) sees it, as 1/9
    one = tmp_path / "one"
    cifar10dvs_file(one / "dog" / "a.aedat", [(0, 0, 0, 1, 0)])
    single, _ = CIFAR10DVS(one, split="all", frames=1, size=48)[0]
    assert single[0, 1, 47, 47] == pytest.approx(1 / 9) and np.count_nonzero(single) == 1


# ---------------------------------------------------------------------------------------------- N-Caltech101

def test_read_ncaltech_bin_decodes_40_bit_events(tmp_path):
    path = tmp_path / "image_0001.bin"
    ncaltech_file(path, [(239, 179, 1, 2**23 - 1), (0, 0, 0, 0), (5, 7, 1, 70000)])
    events = read_ncaltech_bin(path)
    np.testing.assert_array_equal(events.x, [239, 0, 5])
    np.testing.assert_array_equal(events.y, [179, 0, 7])
    np.testing.assert_array_equal(events.p, [1, 0, 1])
    np.testing.assert_array_equal(events.t, [2**23 - 1, 0, 70000])
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="image_0001.bin.*5-byte"):
        read_ncaltech_bin(path)


def make_caltech_folders(root, count=101):
    names = ["BACKGROUND_Google", "Faces_easy", "accordion"] + [f"class_{i:03d}" for i in range(count - 3)]
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_ncaltech101_labels_sorted_folders_and_frames(tmp_path):
    folder = make_caltech_folders(tmp_path / "Caltech101")
    ncaltech_file(folder / "Faces_easy" / "image_0001.bin", [(239, 179, 1, 5)])
    ncaltech_file(folder / "accordion" / "image_0001.bin", [(0, 0, 0, 5), (0, 0, 0, 6)])
    ncaltech_file(folder / "accordion" / "image_0002.bin", [(3, 2, 1, 5)])
    dataset = NCaltech101(tmp_path, split="all")
    assert dataset.classes[:3] == ["BACKGROUND_Google", "Faces_easy", "accordion"]  # upper case sorts first
    assert dataset.labels == [1, 2, 2]
    frames, label = dataset[0]
    assert frames.shape == (14, 2, 180, 240) and label == 1
    assert frames[13, 1, 179, 239] == 1 and frames.sum() == 1
    frames, _ = dataset[1]
    assert frames[13, 0, 0, 0] == 2 and frames.sum() == 2
    # ceil(0.9 * 2) = 2 and ceil(0.9 * 1) = 1: every sample is in train
    assert len(NCaltech101(tmp_path, split="train")) == 3
    with pytest.raises(DatasetError, match="no test samples"):
        load_arrays("ncaltech101", tmp_path, "test")


def test_ncaltech101_refuses_wrong_folder_count_and_bad_events(tmp_path):
    folder = make_caltech_folders(tmp_path / "Caltech101", count=100)
    ncaltech_file(folder / "accordion" / "image_0001.bin", [(240, 0, 0, 5)])
    with pytest.raises(DatasetError, match="found 100 class folders.*101"):
        NCaltech101(tmp_path)
    (folder / "zebra").mkdir()
    with pytest.raises(DatasetError, match="accordion/image_0001.bin.*outside the 240x180"):
        NCaltech101(tmp_path, split="all")[0]


# ---------------------------------------------------------------------------------------------- CIFAR binary

def torchvision_eval(chw_uint8: np.ndarray, mean, std) -> np.ndarray:
    """ToTensor + Normalize as torchvision computes them (float32 torch ops)."""
    t = torch.from_numpy(np.array(chw_uint8)).to(torch.float32).div(255)
    return t.sub(torch.tensor(mean)[:, None, None]).div(torch.tensor(std)[:, None, None]).numpy()


def test_cifar10_binary_records_layout_and_normalisation(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    marked = np.zeros((3, 32, 32), np.uint8)
    marked[0, 0, 0], marked[1, 1, 2], marked[2, 31, 31] = 255, 128, 1
    noise = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    (folder / "test_batch.bin").write_bytes(
        cifar_record([7], marked) + cifar_record([0], noise) + cifar_record([9], np.full((3, 32, 32), 200)))
    dataset = open_dataset("cifar10", tmp_path, "test")
    assert len(dataset) == 3
    image, label = dataset[0]
    assert label == 7 and image.shape == (3, 32, 32) and image.dtype == np.float32
    assert image[0, 0, 0] == pytest.approx((1 - 0.4914) / 0.2023, abs=1e-6)
    assert image[1, 1, 2] == pytest.approx((128 / 255 - 0.4822) / 0.1994, abs=1e-6)
    assert image[2, 31, 31] == pytest.approx((1 / 255 - 0.4465) / 0.2010, abs=1e-6)
    assert image[0, 0, 1] == pytest.approx(-0.4914 / 0.2023, abs=1e-6)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    np.testing.assert_array_equal(dataset[1][0], torchvision_eval(noise, mean, std))
    X, y = load_arrays("cifar10", tmp_path / "cifar-10-batches-bin", "test", limit=2)
    assert X.shape == (2, 3, 32, 32) and y.tolist() == [7, 0] and y.dtype == np.int64


def test_cifar_binary_errors_name_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(cifar_record([3], np.zeros((3, 32, 32))) + b"\0" * 5)
    with pytest.raises(DatasetError, match="data_batch_1.bin is missing"):
        open_dataset("cifar10", tmp_path, "train")
    with pytest.raises(DatasetError, match="test_batch.bin.*3073-byte records"):
        open_dataset("cifar10", tmp_path, "test")
    (folder / "test_batch.bin").write_bytes(cifar_record([42], np.zeros((3, 32, 32))))
    with pytest.raises(DatasetError, match="test_batch.bin: record 0 has label 42"):
        open_dataset("cifar10", tmp_path, "test")


def test_cifar100_uses_fine_label_and_its_statistics(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(cifar_record([3, 42], np.zeros((3, 32, 32)))
                                       + cifar_record([19, 99], np.full((3, 32, 32), 255)))
    X, y = load_arrays("cifar100", tmp_path, "train")
    assert y.tolist() == [42, 99]
    assert X[0, 1, 5, 5] == pytest.approx(-0.4867 / 0.2565, abs=1e-6)
    assert X[1, 2, 0, 0] == pytest.approx((1 - 0.4408) / 0.2761, abs=1e-6)


# ---------------------------------------------------------------------------------------------- ImageNet

def make_imagenet_val(root, count=1000):
    val = root / "val"
    for i in range(count):
        (val / f"n{i:08d}").mkdir(parents=True)
    return val


def test_imagenet_resize_center_crop_normalise(tmp_path):
    val = make_imagenet_val(tmp_path)
    photo = np.random.default_rng(2).integers(0, 256, (427, 640, 3), dtype=np.uint8)
    Image.fromarray(photo).save(val / "n00000000" / "a.JPEG", quality=90)
    # 301x256 is already at the shorter side 256: no resize; crop offsets round(77/2) -> 38, round(32/2) -> 16
    marked = np.zeros((256, 301, 3), np.uint8)
    marked[:, 37] = (0, 0, 255)
    marked[:, 38] = (255, 0, 0)
    marked[16] = (0, 255, 0)
    Image.fromarray(marked).save(val / "n00000001" / "b.png")
    dataset = ImageNet(tmp_path, split="test")
    assert [dataset[i][1] for i in range(len(dataset))] == [0, 1]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image, _ = dataset[1]
    assert image.shape == (3, 224, 224) and image.dtype == np.float32
    np.testing.assert_array_equal(image, torchvision_eval(marked[16:240, 38:262].transpose(2, 0, 1), mean, std))
    # 640x427: shorter side to 256, longer int(256 * 640 / 427) = int(383.7) = 383; crop left round(79.5) = 80, top 16
    with Image.open(val / "n00000000" / "a.JPEG") as jpeg:
        expected = np.asarray(jpeg.convert("RGB").resize((383, 256), Image.Resampling.BILINEAR))[16:240, 80:304]
    np.testing.assert_array_equal(dataset[0][0], torchvision_eval(expected.transpose(2, 0, 1), mean, std))


def test_imagenet_errors(tmp_path):
    val = make_imagenet_val(tmp_path, count=999)
    with pytest.raises(DatasetError, match="found 999 class folders"):
        ImageNet(tmp_path)
    (val / "n99999999").mkdir()
    (val / "n00000000" / "broken.JPEG").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.JPEG"):
        ImageNet(tmp_path)[0]
    with pytest.raises(DatasetError, match="train is missing"):
        ImageNet(tmp_path, split="train")


# ---------------------------------------------------------------------------------------------- entry points

def test_open_dataset_rejects_unknown_names_and_paths(tmp_path):
    with pytest.raises(DatasetError, match="unknown data set 'mnist'.*cifar10"):
        open_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="nowhere does not exist"):
        load_arrays("cifar10", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no split 'val'"):
        open_dataset("dvs128_gesture", tmp_path, "val")


def test_evaluation_samples_decode_only_the_batch_asked_for(tmp_path, monkeypatch):
    """`--data cifar10:ROOT`: the test split is read a batch at a time (the ladder's streaming), equal to the
    arrays `load_arrays` stacks; `--limit` caps it; the fingerprint `--resume` checks names the data set and count."""
    from snn2hw.data import DatasetSamples, evaluation_samples
    from snn2hw.errors import UserError

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ["test_batch.bin", *(f"data_batch_{i}.bin" for i in range(1, 6))]:
        (folder / name).write_bytes(b"".join(cifar_record([i % 10], rng.integers(0, 256, (3, 32, 32)))
                                             for i in range(7)))
    decoded = []
    real = CIFAR10.__getitem__
    monkeypatch.setattr(CIFAR10, "__getitem__", lambda self, i: decoded.append(i) or real(self, i))
    samples, calibration = evaluation_samples(f"cifar10:{tmp_path}", "gac-msresnet18-cifar", limit=5)
    assert isinstance(samples, DatasetSamples) and len(samples) == 5 and len(calibration) == 5 * 7
    decoded.clear()
    x, y = samples.batch(1, 4)
    assert decoded == [1, 2, 3]
    X, Y = load_arrays("cifar10", tmp_path, "test", limit=5)
    np.testing.assert_array_equal(x, X[1:4])
    assert y.tolist() == Y[1:4].tolist() and y.dtype == np.int64
    assert samples.batch(3, 9)[0].shape[0] == 2  # the limit holds
    again = evaluation_samples(f"cifar10:{tmp_path}", "gac-msresnet18-cifar", limit=5)[0]
    other = evaluation_samples(f"cifar10:{tmp_path}", "gac-msresnet18-cifar", limit=4)[0]
    assert again.fingerprint() == samples.fingerprint() != other.fingerprint()
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"--data cifar10:.*test_batch.bin: 0 bytes is not a whole number"):
        evaluation_samples(f"cifar10:{tmp_path}", "gac-msresnet18-cifar")
