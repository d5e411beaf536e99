"""make_optimizer: the warm-up then cosine learning rate, against values computed by hand, and clipping."""

import pytest

from kcaption.optim import make_optimizer


def rate_at(optimizer, step):
    """The learning rate the optimizer uses at its step `step`."""
    optimizer.iterations.assign(step)
    return float(optimizer.learning_rate)


def test_the_learning_rate_warms_up_linearly_then_decays_along_a_half_cosine():
    # 10 steps an epoch, 5 epochs, 1 of warm-up: W = 10 warm-up steps, D = 40 decay steps, peak 1e-3.
    optimizer = make_optimizer(1e-3, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    expected = {
        0: 0.0,  # the warm-up starts from 0
        5: 0.5e-3,  # halfway up: 1e-3 * 5 / 10
        10: 1e-3,  # the peak: 0.5 * (1 + cos 0)
        20: 0.853553e-3,  # 0.5 * (1 + cos(pi / 4)) = 0.8535534
        30: 0.5e-3,  # half the decay: 0.5 * (1 + cos(pi / 2))
        40: 0.146447e-3,  # 0.5 * (1 + cos(3 pi / 4)) = 0.1464466
        50: 0.0,  # the end of the run
        60: 0.0,  # and it stays there
    }
    got = {step: rate_at(optimizer, step) for step in expected}
    assert got == pytest.approx(expected, abs=1e-9), "learning rate by step: expected the formula of make_optimizer"
    assert optimizer.clipnorm == 5.0


def test_no_warm_up_starts_at_the_peak_and_a_warm_up_as_long_as_the_run_is_refused():
    optimizer = make_optimizer(2e-3, steps_per_epoch=4, epochs=2, warmup_epochs=0, clipnorm=None)
    assert rate_at(optimizer, 0) == pytest.approx(2e-3) and rate_at(optimizer, 4) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="Received: warmup_epochs=2, epochs=2"):
        make_optimizer(1e-3, steps_per_epoch=4, epochs=2, warmup_epochs=2)
