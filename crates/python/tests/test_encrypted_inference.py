"""from_torch + encrypted_predict agree with torch's argmax on >= 0.999 of 1,000
real MNIST test images, for an MLP and a CNN trained here with torch."""
import numpy as np
import pytest

import ppml

torch = pytest.importorskip("torch")
nn = torch.nn


def _train_torch(net, x, y, epochs, lr, batch=64, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=g)
        for s in range(0, len(yt), batch):
            i = perm[s:s + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[i]), yt[i]).backward()
            opt.step()
    net.eval()
    return net


def _agreement(net, model, x):
    with torch.no_grad():
        want = net(torch.from_numpy(x)).argmax(1).numpy()
    got, report = ppml.encrypted_predict(model, x)
    return want, got, report


def test_mlp_encrypted_matches_torch(mnist):
    xtr, ytr, xte, yte = mnist
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    _train_torch(net, xtr[:10000], ytr[:10000], epochs=1, lr=0.05)
    model = ppml.Model.from_torch(net, (784,))
    x = xte[:1000]
    want, got, report = _agreement(net, model, x)
    assert got.shape == (1000,) and got.dtype == np.int64
    agree = (want == got).mean()
    assert agree >= 0.999, agree
    # The model learned something, so agreement is not between two constant outputs.
    assert (want == yte[:1000]).mean() > 0.85
    assert report["images"] == 1000
    assert report["seconds"] > 0 and report["images_per_second"] > 0
    assert set(report["bytes_per_party"]) == {"p0", "p1", "p2", "model-owner", "data-owner"}
    assert all(b > 0 for b in report["bytes_per_party"].values())
    assert report["bytes_total"] == sum(report["bytes_per_party"].values())
    assert report["rounds"] > 0
    # The plaintext path of the same model agrees with torch too.
    assert (model.predict(x) == want).mean() >= 0.999


def test_cnn_encrypted_matches_torch(mnist):
    xtr, ytr, xte, yte = mnist
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )
    x4 = xtr[:6000].reshape(-1, 1, 28, 28)
    _train_torch(net, x4, ytr[:6000], epochs=1, lr=0.02)
    model = ppml.Model.from_torch(net, (1, 28, 28))
    x = xte[:1000].reshape(-1, 1, 28, 28)
    want, got, report = _agreement(net, model, x)
    agree = (want == got).mean()
    assert agree >= 0.999, agree
    assert (want == yte[:1000]).mean() > 0.85
    # Flat (N, 784) input is accepted too.
    got_flat, _ = ppml.encrypted_predict(model, xte[:50], batch_size=20)
    assert (got_flat == got[:50]).mean() >= 0.98


def test_module_with_layers_in_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(20, 16)
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(16, 3)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    net = Net()
    model = ppml.Model.from_torch(net, (20,))
    lo, hi = ppml.INPUT_RANGE  # what the model owner's range analysis covers
    x = np.random.default_rng(0).uniform(lo, hi, (64, 20)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.logits(x), want, rtol=1e-4, atol=1e-5)
    got, _ = ppml.encrypted_predict(model, x)
    assert (got == want.argmax(1)).mean() >= 0.95  # random net: near-ties may flip
