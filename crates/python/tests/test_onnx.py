"""Model.load of an .onnx file: the repo's torch-exported CNN fixture
(Conv, BatchNorm, ReLU, MaxPool, Conv, ReLU, AvgPool, Flatten, Linear, ReLU,
Linear; see tests/fixtures/make_onnx_fixture.py) predicts what torch did."""

import os

import numpy as np
import pytest

import ppml

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "fixtures")


def test_onnx_fixture_plaintext_and_encrypted_agree_with_torch():
    model = ppml.Model.load(os.path.join(FIXTURES, "cnn_bn.onnx"))
    x = np.load(os.path.join(FIXTURES, "mnist_test_1000_u8.npy")).astype(np.float32) / 255.0
    x = x.reshape(len(x), -1)
    expected = np.load(os.path.join(FIXTURES, "cnn_bn_expected.npy"))
    plain = model.predict(x)
    assert (plain == expected).mean() >= 0.999
    n = 50  # encrypted CNN inference is slow in debug-free CI time budgets; 50 images
    preds, report = ppml.encrypted_predict(model, x[:n])
    assert (preds == expected[:n]).mean() >= 0.98
    assert report["rounds"] > 0


def test_onnx_garbage_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError):
        ppml.Model.load(bad)
