"""Clear exceptions: unsupported layers, wrong shapes, NaN inputs, bad options and files."""
import numpy as np
import pytest

import ppml

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.mark.parametrize("layer,name", [
    (nn.Tanh(), "Tanh"), (nn.BatchNorm1d(16), "BatchNorm1d"), (nn.Sigmoid(), "Sigmoid"),
])
def test_unsupported_layer_is_named(layer, name):
    net = nn.Sequential(nn.Linear(8, 16), layer, nn.Linear(16, 2))
    with pytest.raises(ValueError, match=name):
        ppml.Model.from_torch(net, (8,))


def test_avgpool_and_strided_dilated_conv_are_refused():
    with pytest.raises(ValueError, match="dilation"):
        ppml.Model.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), (1, 8, 8))
    with pytest.raises(ValueError, match="AvgPool2d"):
        ppml.Model.from_torch(nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 2)), (1, 8, 8))


def test_forward_that_is_not_the_chain_is_refused():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 4)
            self.fc2 = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x)))  # a functional layer ppml cannot see

    with pytest.raises(ValueError, match="registration order"):
        ppml.Model.from_torch(Skips(), (4,))


def test_input_shape_mismatch_with_the_module():
    with pytest.raises(ValueError, match="784"):
        ppml.Model.from_torch(nn.Sequential(nn.Linear(784, 10)), (100,))


def test_wrong_input_shapes():
    m = ppml.Model.arch("2nn", seed=0)
    for bad in [np.zeros((3, 100), np.float32), np.zeros(784, np.float32),
                np.zeros((2, 1, 28, 27), np.float32)]:
        with pytest.raises(ValueError, match="does not fit the model"):
            m.predict(bad)
        with pytest.raises(ValueError, match="does not fit the model"):
            ppml.encrypted_predict(m, bad)
    cnn = ppml.Model.arch("cnn", seed=0)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        cnn.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="labels"):
        m.fit(np.zeros((4, 784), np.float32), np.zeros(3, np.uint8))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(value):
    m = ppml.Model.arch("2nn", seed=0)
    x = np.zeros((3, 784), np.float32)
    x[1, 7] = value
    for call in (lambda: m.predict(x), lambda: m.logits(x), lambda: ppml.encrypted_predict(m, x),
                 lambda: m.fit(x, np.zeros(3, np.uint8)), lambda: m.evaluate(x, np.zeros(3, np.uint8))):
        with pytest.raises(ValueError, match="NaN or infinity|not finite"):
            call()
    p = m.get_params()
    p[0] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        m.set_params(p)


def test_nan_weights_in_torch_module():
    net = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ppml.Model.from_torch(net, (4,))


def test_inputs_outside_the_declared_range():
    m = ppml.Model.arch("2nn", seed=0)
    x = np.zeros((2, 784), np.float32)
    x[1, 3] = ppml.INPUT_RANGE[1] + 1.0
    with pytest.raises(ValueError, match="input range"):
        ppml.encrypted_predict(m, x)


def test_out_of_range_activations_need_wider_comparisons():
    # cmp_bits = frac_bits + 1 only compares |x| < 2; bad options are ValueErrors.
    m = ppml.Model.arch("2nn", seed=0)
    x = np.zeros((2, 784), np.float32)
    with pytest.raises(ValueError, match="cmp_bits"):
        ppml.encrypted_predict(m, x, cmp_bits=70)
    with pytest.raises(ValueError, match="truncation"):
        ppml.encrypted_predict(m, x, truncation="round")
    with pytest.raises(ValueError, match="batch_size"):
        ppml.encrypted_predict(m, x, batch_size=0)
    with pytest.raises(ValueError, match="unknown options"):
        ppml.encrypted_predict(m, x, batch=3)
    with pytest.raises(ValueError, match="timeout"):
        ppml.encrypted_predict(m, x, timeout=-1)


def test_bad_labels_and_settings():
    m = ppml.Model.arch("2nn", seed=0)
    x = np.zeros((2, 784), np.float32)
    with pytest.raises(ValueError, match="label 10"):
        m.fit(x, np.array([1, 10]))
    with pytest.raises(ValueError, match="0..=255"):
        m.fit(x, np.array([1, -1]))
    with pytest.raises(ValueError, match="lr"):
        m.fit(x, np.array([1, 2]), lr=float("nan"))
    with pytest.raises(ValueError, match="batch size"):
        m.fit(x, np.array([1, 2]), batch_size=0)
    with pytest.raises(ValueError, match="parameter vector has 5 values"):
        m.set_params(np.zeros(5, np.float32))


def test_files(tmp_path):
    with pytest.raises(OSError, match="cannot read"):
        ppml.Model.load(tmp_path / "missing.ppml")
    bad = tmp_path / "bad.ppml"
    bad.write_bytes(b"not a model file at all")
    with pytest.raises(ValueError, match="model file"):
        ppml.Model.load(bad)
    with pytest.raises(ValueError, match="arch"):
        ppml.Model.load(tmp_path / "x.safetensors")
    onnx = tmp_path / "x.onnx"
    onnx.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError):
        ppml.Model.load(onnx)
    with pytest.raises(ValueError, match="unknown architecture"):
        ppml.Model.arch("resnet")
