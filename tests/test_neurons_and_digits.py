import numpy as np
import pytest
import torch

from snn2hw.models import digits
from snn2hw.models.neurons import LeakyLIF, SpikingJellyLIF


def _run(neuron, xs, time_dim):
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1) if time_dim == 0 else \
        torch.tensor(xs, dtype=torch.float32).reshape(1, -1)
    return neuron(x).flatten().tolist()


def test_spikingjelly_lif_fires_at_threshold_and_decays_input():
    lif = SpikingJellyLIF(tau=2.0, v_threshold=1.0)
    # v1 = (2 - 0)/2 = 1 fires (>=), reset; v2 = 0; v3 = 1 fires
    assert _run(lif, [2.0, 0.0, 2.0], 0) == [1.0, 0.0, 1.0]
    # v1 = 0.75; v2 = 0.75 + (1.5 - 0.75)/2 = 1.125 fires; v3 = 0.75
    assert _run(lif, [1.5, 1.5, 1.5], 0) == [0.0, 1.0, 0.0]


def test_gac_lif_fires_strictly_above_threshold():
    lif = LeakyLIF(decay=0.5, threshold=1.0, time_dim=1)
    # v1 = 1 (not > 1); v2 = 0.5 + 1 = 1.5 fires, reset; v3 = 1
    assert _run(lif, [1.0, 1.0, 1.0], 1) == [0.0, 1.0, 0.0]


def test_imagenet_lif_decay_quarter_threshold_half():
    lif = LeakyLIF(decay=0.25, threshold=0.5, time_dim=0)
    # v1 = 0.5 (not > 0.5); v2 = 0.125 + 0.5 = 0.625 fires; v3 = 0.5; v4 = 0.625 fires
    assert _run(lif, [0.5] * 4, 0) == [0.0, 1.0, 0.0, 1.0]


def test_neurons_keep_batch_and_layout():
    x = torch.rand(3, 5, 4, 2) * 3
    a = LeakyLIF(time_dim=1)(x)
    b = LeakyLIF(time_dim=0)(x.transpose(0, 1)).transpose(0, 1)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}


def test_digits_split_is_fixed_and_stratified():
    x_tr, y_tr = digits.digit_images("train")
    x_te, y_te = digits.digit_images("test")
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert 0.0 <= x_te.min() and x_te.max() <= 1.0
    assert np.bincount(y_te).min() >= 34 and np.bincount(y_te).max() <= 37
    np.testing.assert_array_equal(y_te, digits.digit_images("test")[1])
    with pytest.raises(ValueError, match="unknown digits split"):
        digits.digit_images("validation")


def test_events_are_counts_that_balance_over_a_closed_saccade():
    images = digits.digit_images("test")[0][:20, 0]
    ev = digits.emulate_events(images, timesteps=8)
    assert ev.shape == (20, 8, 2, 16, 16)
    assert np.array_equal(ev, np.round(ev)) and ev.min() == 0 and ev.max() > 1
    # The saccade returns to its start, so every pixel's reference returns to its start level: ON == OFF in total.
    np.testing.assert_array_equal(ev[:, :, 0].sum(1), ev[:, :, 1].sum(1))
    assert ev.sum() > 0 and np.array_equal(ev, digits.emulate_events(images, timesteps=8))


def test_events_follow_log_intensity_thresholding():
    # A fully bright image moving right by half a pixel: the left border pixel falls from 1 to 0.5 in linear
    # intensity; log(0.1 + 0.5) - log(0.1 + 1) = -0.606, one OFF event at threshold 0.5.
    img = np.ones((1, 8, 8), np.float32)
    ev = digits.emulate_events(img, timesteps=1)
    assert ev[0, 0, 0, 8, 0] == 1 and ev[0, 0, 1].sum() == 0  # channel 0 is OFF, as in SpikingJelly
    assert ev[0, 0, 0, 8, 8] == 0  # interior pixels see no change
