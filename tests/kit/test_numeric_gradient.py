"""`kcaption.testing.numeric_gradient`: the reference every lesson-08 check leans on, checked against calculus."""

import numpy as np
import pytest

from kcaption.testing import numeric_gradient, rel_error


def test_a_scalar_function_gives_its_derivative():
    x = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    grad = numeric_gradient(lambda v: np.sum(np.sin(v) * v), x)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    assert rel_error(grad, np.cos(x) * x + np.sin(x)) < 1e-9


def test_an_upstream_gradient_gives_the_vector_jacobian_product():
    x, W = np.linspace(-1.0, 1.0, 6).reshape(2, 3), np.linspace(0.5, -0.7, 12).reshape(3, 4)
    df = np.cos(np.arange(8.0)).reshape(2, 4)
    assert rel_error(numeric_gradient(lambda v: np.tanh(v @ W), x, df=df), (df * (1 - np.tanh(x @ W) ** 2)) @ W.T) < 1e-9
    assert rel_error(numeric_gradient(lambda w: np.tanh(x @ w), W, df=df), x.T @ (df * (1 - np.tanh(x @ W) ** 2))) < 1e-9


def test_the_point_is_left_as_it_was_and_float32_is_moved_in_float64():
    x = np.linspace(-1.0, 1.0, 5).astype("float32")
    seen = []
    numeric_gradient(lambda v: seen.append(v.dtype) or np.sum(v**2), x)
    np.testing.assert_array_equal(x, np.linspace(-1.0, 1.0, 5).astype("float32"))
    assert set(seen) == {np.dtype("float64")}


def test_a_non_scalar_function_without_df_and_a_df_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"without `df` it must return a scalar.*Received: f\(x\).shape=\(3,\)"):
        numeric_gradient(lambda v: v * 2, np.ones(3))
    with pytest.raises(ValueError, match=r"`df` must have the shape of f\(x\), \(3,\). Received: df.shape=\(2,\)"):
        numeric_gradient(lambda v: v * 2, np.ones(3), df=np.ones(2))
