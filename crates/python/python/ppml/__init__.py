"""ppml: privacy-preserving machine learning with a Rust core.

* ``ppml.Model`` -- a feed-forward model (Linear, ReLU, Conv2d, MaxPool2d,
  Flatten): ``Model.from_torch(module, input_shape)``, ``Model.load(path)``,
  ``model.save(path)``, ``model.predict(x)``, ``model.fit(x, y, ...)``,
  ``model.evaluate(x, y)``, ``model.get_params()`` / ``set_params(p)``.
* ``ppml.encrypted_predict(model, x, **options) -> (predictions, report)`` --
  3-party secret-shared inference, five roles in this process; only the data
  owner's predictions come back.
* ``ppml.SecAggServer`` / ``ppml.SecAggClient`` -- secure aggregation
  (Bonawitz et al. 2017, SecAgg+) with messages as bytes, for any FL framework.
* ``ppml.load_mnist(dir)`` -- the MNIST IDX loader.

Rust errors keep their message: ``ValueError`` for bad input, ``OSError`` for
files, ``ppml.ProtocolError`` (a ``RuntimeError``) when a protocol fails.
"""

import numpy as _np

from . import _native
from ._native import ARCHS, INPUT_RANGE, ProtocolError, SecAggClient, SecAggServer, secagg_quantize

__version__ = _native.__version__
__all__ = [
    "ARCHS",
    "INPUT_RANGE",
    "Model",
    "ProtocolError",
    "SecAggClient",
    "SecAggServer",
    "encrypted_predict",
    "load_mnist",
    "secagg_quantize",
]


def _as_f32(x, what="input"):
    """A C-contiguous float32 numpy view of ``x`` (numpy array, torch tensor or
    sequence); copies only when the dtype or layout differs."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        a = _np.ascontiguousarray(x, dtype=_np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} cannot be read as float32: {e}") from None
    return a


def _as_labels(y, n=None):
    if hasattr(y, "detach") and hasattr(y, "numpy"):
        y = y.detach().cpu().numpy()
    y = _np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}")
    if y.dtype != _np.uint8:
        if not _np.issubdtype(y.dtype, _np.integer):
            raise ValueError(f"labels must be integers, got {y.dtype}")
        if y.size and (y.min() < 0 or y.max() > 255):
            raise ValueError(f"labels must be class indices in 0..=255, got {y.min()}..{y.max()}")
        y = y.astype(_np.uint8)
    return _np.ascontiguousarray(y)


class Model:
    """A feed-forward model whose layers run in order (Linear, ReLU, Conv2d,
    MaxPool2d, Flatten), held by ppml's Rust core. Build one with
    ``Model.from_torch``, ``Model.load`` or ``Model.arch``."""

    __slots__ = ("_m",)

    def __init__(self, native):
        if not isinstance(native, _native.Model):
            raise TypeError("use Model.from_torch, Model.load or Model.arch to build a Model")
        self._m = native

    @staticmethod
    def from_torch(module, input_shape):
        """Reads a torch module that is a chain of supported layers
        (``nn.Sequential``, or a module whose child layers run in registration
        order): Linear, Conv2d, ReLU, MaxPool2d, Flatten, and Dropout/Identity
        (no-ops at inference). ``input_shape`` is one sample's shape, e.g.
        ``(784,)`` or ``(1, 28, 28)``. Raises ValueError naming the first
        unsupported layer, or if the module's forward does not compute what
        its layers in order compute."""
        from ._torch import from_torch

        return from_torch(module, input_shape)

    @staticmethod
    def from_layers(input_shape, layers, arch="custom"):
        """From layer dicts (``type``: linear, conv2d, relu, maxpool2d, flatten)."""
        return Model(_native.Model.from_layers(list(input_shape), list(layers), arch))

    @staticmethod
    def load(path, arch=None):
        """Loads a ``.ppml`` file, or a ``.safetensors`` file (PyTorch names)
        for the named architecture ``arch`` (see ``ppml.ARCHS``)."""
        return Model(_native.Model.load(str(path), arch))

    @staticmethod
    def arch(name, seed=0):
        """A named architecture (``ppml.ARCHS``) with random initialisation."""
        return Model(_native.Model.arch(name, seed))

    def save(self, path):
        """Writes ``.safetensors`` by extension, otherwise a ``.ppml`` file."""
        self._m.save(str(path))

    def predict(self, x):
        """Plaintext class predictions (int64) of ``x``: ``(N, *input_shape)``
        or ``(N, input_size)``."""
        return self._m.predict(_as_f32(x))

    def logits(self, x):
        """Plaintext logits, shape ``(N, outputs)``."""
        return self._m.logits(_as_f32(x))

    def fit(self, x, y, epochs=1, batch_size=64, lr=0.01, momentum=0.0, weight_decay=0.0,
            schedule="constant", seed=0):
        """Minibatch SGD (log-softmax + NLL loss) on ``(x, y)``, shuffled from
        ``seed``; returns ``{loss, losses, steps, seconds, samples}``.
        Ctrl-C stops it with KeyboardInterrupt."""
        return self._m.fit(_as_f32(x), _as_labels(y), epochs, batch_size, lr, momentum,
                           weight_decay, schedule, seed)

    def evaluate(self, x, y):
        """``{accuracy, loss, samples}`` on ``(x, y)``."""
        return self._m.evaluate(_as_f32(x), _as_labels(y))

    def get_params(self):
        """All parameters as one float32 vector (per layer: weight, then bias)."""
        return self._m.get_params()

    def set_params(self, p):
        """Replaces all parameters from a flat float32 vector (``get_params`` layout)."""
        self._m.set_params(_as_f32(p, "parameters").reshape(-1))

    def copy(self):
        return Model(self._m.copy())

    num_params = property(lambda self: self._m.num_params, doc="Number of parameters.")
    input_shape = property(lambda self: tuple(self._m.input_shape), doc="One sample's shape.")
    output_size = property(lambda self: self._m.output_size, doc="Number of outputs.")
    name = property(lambda self: self._m.name, doc="Architecture name.")
    layers = property(lambda self: self._m.layers, doc="Layer descriptions.")

    def __repr__(self):
        return repr(self._m)


def encrypted_predict(model, x, **options):
    """Predicts ``x`` with ``model`` under 3-party secret sharing (ppml's
    SecureNN-style protocols), with the model owner, the data owner and the
    three computing parties as threads of this process over in-memory
    channels. Returns ``(predictions, report)``: the data owner's predictions
    (int64) and a dict with ``seconds``, ``images_per_second``,
    ``bytes_per_party``, ``bytes_total``, ``rounds`` and more.

    Inputs must lie in ``ppml.INPUT_RANGE`` (MNIST pixels normalised with
    mean 0.1307 and std 0.3081, as ``load_mnist`` gives them): the model
    owner's range analysis proves the comparison widths for that range, and
    an input outside it is a ValueError rather than a silently wrong answer.

    Options: ``batch_size`` (1000), ``frac_bits`` (16), ``cmp_bits`` (widest
    comparison allowed, 63), ``truncation`` (``exact`` or ``local``),
    ``timeout`` (seconds, 60)."""
    known = {"batch_size", "frac_bits", "cmp_bits", "truncation", "timeout"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(known)}")
    if not isinstance(model, Model):
        raise TypeError(f"model must be a ppml.Model, got {type(model).__name__}")
    return _native.encrypted_predict(model._m, _as_f32(x), **options)


def load_mnist(data_dir=None, normalize="standard"):
    """``(x_train, y_train, x_test, y_test)`` from the four MNIST IDX files in
    ``data_dir`` (default ``$PPML_DATA`` or ``data/mnist``): images float32
    ``(N, 784)``, labels uint8. ``normalize``: ``standard`` or ``unit``."""
    return _native.load_mnist(None if data_dir is None else str(data_dir), normalize)
