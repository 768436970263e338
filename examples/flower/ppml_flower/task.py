"""What server and clients share: the model, the data and the partitions.

The setting of the PyTorch reference app (McMahan et al.'s 2NN, 784-200-200-10,
on pixels in [0, 1]; 100 IID partitions; each round the N SuperNodes play N of
the 100 clients, node i training partition perm_r[i] for a seeded permutation
perm_r), so that round times and accuracies compare one to one.
"""
import numpy as np
import ppml

ARCH = "2nn"
_DATA = {}


def model():
    return ppml.Model.arch(ARCH, seed=0)


def mnist():
    """(x_train, y_train, x_test, y_test), loaded once per process by ppml's
    IDX loader from $PPML_DATA (or data/mnist)."""
    if "d" not in _DATA:
        _DATA["d"] = ppml.load_mnist(normalize="unit")
    return _DATA["d"]


def partitions(num_partitions):
    return np.array_split(np.random.default_rng(0).permutation(60000), num_partitions)


def partition_of_node(partition_id, server_round, num_partitions):
    return int(np.random.default_rng(1000 + server_round).permutation(num_partitions)[partition_id])


def to_ndarrays(m):
    return [m.get_params()]


def from_ndarrays(m, arrays):
    m.set_params(np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays]))
    return m
