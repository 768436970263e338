"""Secure aggregation objects: the exact sum of the survivors under dropouts,
with every message carried as bytes (as an FL framework would)."""
import numpy as np
import pytest

import ppml


def run_round(xs, drop_before=None, server_kw=None):
    """Drives one round; drop_before maps client id -> step (0..3) it never sends."""
    drop_before = drop_before or {}
    n, dim = len(xs), len(xs[0])
    server = ppml.SecAggServer(n, dim, **(server_kw or {}))
    clients = [ppml.SecAggClient(i, xs[i], **server.params) for i in range(n)]
    alive = lambda i, step: drop_before.get(i, 99) > step  # noqa: E731

    for c in clients:
        if alive(c.id, 0):
            server.receive_keys(c.id, bytes(c.advertise_keys()))
    for i, msg in server.broadcast_keys().items():
        if alive(i, 1):
            server.receive_shares(i, clients[i].share_keys(msg))
    for i, msg in server.forward_shares().items():
        if alive(i, 2):
            server.receive_masked(i, clients[i].masked_input(msg))
    for i, msg in server.unmask_requests().items():
        if alive(i, 3):
            server.receive_unmask(i, clients[i].unmask(msg))
    return server, server.finish()


def exact_quantised_sum(xs, ids, bits, clip, ring_bits):
    acc = np.zeros(len(xs[0]), np.uint64)
    for i in ids:
        acc += ppml.secagg_quantize(xs[i], bits=bits, clip=clip)  # wraps mod 2^64
    return acc & np.uint64((1 << ring_bits) - 1)


@pytest.mark.parametrize("graph", [False, True])
def test_exact_sum_under_dropout(graph, rng):
    n, dim = 12, 1000
    xs = [rng.uniform(-1.2, 1.2, dim).astype(np.float32) for _ in range(n)]
    # Client 3 leaves before sending its masked vector (its pairwise masks must be
    # removed from the sum); client 7 leaves after it (its input counts, its
    # self-mask is removed with the others' shares).
    server, out = run_round(xs, {3: 2, 7: 3}, {"graph": graph, "bits": 16, "clip": 1.0})
    survivors = [i for i in range(n) if i != 3]
    assert out["survivors"] == survivors
    want = exact_quantised_sum(xs, survivors, 16, 1.0, server.ring_bits)
    np.testing.assert_array_equal(out["sum_quantised"], want)
    clipped = sum(np.clip(xs[i], -1, 1).astype(np.float64) for i in survivors)
    assert np.abs(out["sum"] - clipped).max() <= out["error_bound"] + 1e-4
    assert out["set_sizes"] == [12, 12, 11, 10]


def test_no_dropout_and_dropout_at_keys(rng):
    xs = [rng.uniform(-1, 1, 50).astype(np.float32) for _ in range(5)]
    _, out = run_round(xs)
    assert out["survivors"] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(out["sum"], sum(xs), atol=out["error_bound"] + 1e-5)
    _, out = run_round(xs, {0: 0, 4: 1})
    assert out["survivors"] == [1, 2, 3]
    np.testing.assert_allclose(out["sum"], xs[1] + xs[2] + xs[3], atol=out["error_bound"] + 1e-5)


def test_too_many_dropouts_abort(rng):
    xs = [rng.uniform(-1, 1, 8).astype(np.float32) for _ in range(5)]
    with pytest.raises(ppml.ProtocolError, match="threshold"):
        run_round(xs, {0: 2, 1: 2, 2: 2})


def test_tampered_and_misrouted_messages(rng):
    xs = [rng.uniform(-1, 1, 8).astype(np.float32) for _ in range(3)]
    server = ppml.SecAggServer(3, 8)
    clients = [ppml.SecAggClient(i, xs[i], **server.params) for i in range(3)]
    keys = [c.advertise_keys() for c in clients]
    with pytest.raises(ppml.ProtocolError, match="wrong client id"):
        server.receive_keys(1, keys[0])
    with pytest.raises(ppml.ProtocolError, match="malformed"):
        server.receive_keys(0, b"\x00")
    for i, k in enumerate(keys):
        server.receive_keys(i, k)
    with pytest.raises(ppml.ProtocolError, match="appears twice"):
        server.receive_keys(0, keys[0])
    bc = server.broadcast_keys()
    with pytest.raises(ppml.ProtocolError, match="out of order"):
        clients[0].masked_input(b"\x00")  # wrong step: malformed or out of order
    shares = {i: clients[i].share_keys(bc[i]) for i in range(3)}
    for i in range(3):
        server.receive_shares(i, shares[i])
    fwd = server.forward_shares()
    bad = bytearray(fwd[0])
    bad[-1] ^= 1  # flip a ciphertext bit
    with pytest.raises(ppml.ProtocolError, match="authentication"):
        clients[0].masked_input(bytes(bad))


def test_bad_parameters(rng):
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="2..="):
        ppml.SecAggServer(1, 4)
    with pytest.raises(ValueError, match="2..="):
        ppml.SecAggServer(2**40, 4)
    with pytest.raises(ValueError, match="dimension"):
        ppml.SecAggServer(5, 2**40)
    with pytest.raises(ValueError, match="threshold"):
        ppml.SecAggServer(5, 4, threshold=9)
    s = ppml.SecAggServer(3, 4)
    with pytest.raises(ValueError, match="dimension 5"):
        ppml.SecAggClient(0, np.zeros(5, np.float32), **s.params)
    with pytest.raises(ValueError, match="not finite"):
        ppml.SecAggClient(0, np.array([0, np.nan, 0, 0], np.float32), **s.params)
    with pytest.raises(ValueError, match="session"):
        ppml.SecAggClient(0, x, n=3, dim=4)
    assert len(s.params["session"]) == 16
    assert ppml.SecAggServer(3, 4).params["session"] != s.params["session"]
