import os
from pathlib import Path

import numpy as np
import pytest

import ppml

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("PPML_DATA", ROOT / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist():
    """MNIST through ppml's IDX loader: x float32 (N, 784) normalised, y uint8."""
    return ppml.load_mnist(DATA)


@pytest.fixture(scope="session")
def mnist_unit():
    return ppml.load_mnist(DATA, normalize="unit")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
