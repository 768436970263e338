"""Training, evaluation, flat parameters and model files through the bindings."""
import numpy as np
import pytest

import ppml


def test_fit_learns_mnist(mnist):
    xtr, ytr, xte, yte = mnist
    m = ppml.Model.arch("2nn", seed=0)
    before = m.evaluate(xte[:2000], yte[:2000])
    r = m.fit(xtr[:6000], ytr[:6000], epochs=2, batch_size=32, lr=0.05, momentum=0.5, seed=1)
    after = m.evaluate(xte[:2000], yte[:2000])
    assert before["accuracy"] < 0.3
    assert after["accuracy"] > 0.88, after
    assert after["loss"] < before["loss"]
    assert len(r["losses"]) == 2 and r["losses"][1] < r["losses"][0]
    assert r["steps"] == 2 * (6000 // 32 + 1) and r["samples"] == 6000


def test_fit_is_reproducible_and_seed_dependent(mnist):
    xtr, ytr, _, _ = mnist
    runs = []
    for seed in (3, 3, 4):
        m = ppml.Model.arch("2nn", seed=0)
        m.fit(xtr[:500], ytr[:500], batch_size=10, lr=0.05, seed=seed)
        runs.append(m.get_params())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_fit_refuses_zero_epochs_and_reports_divergence(mnist):
    xtr, ytr, _, _ = mnist
    m = ppml.Model.arch("2nn", seed=0)
    with pytest.raises(ValueError, match="epochs"):
        m.fit(xtr[:100], ytr[:100], epochs=0)
    # A learning rate that blows the loss up is an error, not a NaN model.
    with pytest.raises(ValueError, match="diverged"):
        m.fit(xtr[:200], ytr[:200], epochs=1, lr=1e30)


def test_params_roundtrip_and_averaging():
    a, b = ppml.Model.arch("2nn", seed=1), ppml.Model.arch("2nn", seed=2)
    pa, pb = a.get_params(), b.get_params()
    assert pa.dtype == np.float32 and pa.shape == (a.num_params,) == (199210,)
    avg = (pa + pb) / 2
    a.set_params(avg)
    np.testing.assert_array_equal(a.get_params(), avg)
    # float64 and lists are converted
    a.set_params(avg.astype(np.float64))
    np.testing.assert_allclose(a.get_params(), avg)


def test_save_load_ppml_and_safetensors(tmp_path, mnist):
    _, _, xte, _ = mnist
    m = ppml.Model.arch("cnn", seed=5)
    for name, arch in [("m.ppml", None), ("m.safetensors", "cnn")]:
        m.save(tmp_path / name)
        back = ppml.Model.load(tmp_path / name, arch=arch)
        np.testing.assert_array_equal(back.get_params(), m.get_params())
        np.testing.assert_array_equal(back.predict(xte[:20]), m.predict(xte[:20]))
    assert m.input_shape == (1, 28, 28) and m.output_size == 10
    assert "Conv2d" in repr(m)


def test_load_mnist(mnist, mnist_unit):
    xtr, ytr, xte, yte = mnist
    assert xtr.shape == (60000, 784) and xte.shape == (10000, 784)
    assert ytr.dtype == np.uint8 and set(np.unique(yte)) == set(range(10))
    xu = mnist_unit[2]
    assert xu.min() == 0.0 and xu.max() == 1.0
    np.testing.assert_allclose(xte, (xu - 0.1307) / 0.3081, atol=1e-5)
    with pytest.raises(ValueError, match="normalisation"):
        ppml.load_mnist(None, normalize="zscore")
    with pytest.raises(ValueError, match="not found"):
        ppml.load_mnist("/nonexistent")
