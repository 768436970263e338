"""``Model.from_torch``: a torch module's layers and weights as ppml's model
description. torch is imported only here, so ``import ppml`` does not need it."""

import numpy as np


def _pair(v, what, layer):
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"unsupported layer {layer}: {what} {tuple(v)} is not square")
        return int(v[0])
    return int(v)


def _leaves(module, prefix=""):
    """The module's layers in registration order, descending into containers
    (nn.Sequential and modules with children)."""
    children = list(module.named_children())
    if not children:
        yield prefix or type(module).__name__, module
        return
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def _f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def from_torch(module, input_shape):
    import torch
    from torch import nn

    from . import Model

    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape {input_shape!r} must be positive dimensions of one sample")
    if len(shape) not in (1, 3):
        raise ValueError(f"input_shape {shape} must be (features,) or (channels, height, width)")

    layers = []
    cur = shape  # the running per-sample shape
    for name, m in _leaves(module):
        desc = f"{name} ({type(m).__name__})"
        if isinstance(m, (nn.Dropout, nn.Identity)):
            continue  # no-ops at inference
        if isinstance(m, nn.ReLU):
            layers.append({"type": "relu"})
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"unsupported layer {desc}: only Flatten(start_dim=1) is supported")
            layers.append({"type": "flatten"})
            cur = (int(np.prod(cur)),)
        elif isinstance(m, nn.Linear):
            if int(np.prod(cur)) != m.in_features:
                raise ValueError(
                    f"layer {desc} takes {m.in_features} features but receives shape {cur}")
            bias = _f32(m.bias) if m.bias is not None else np.zeros(m.out_features, np.float32)
            layers.append({"type": "linear", "weight": _f32(m.weight), "bias": bias,
                           "in_features": m.in_features, "out_features": m.out_features})
            cur = (m.out_features,)
        elif isinstance(m, nn.Conv2d):
            if len(cur) != 3 or cur[0] != m.in_channels:
                raise ValueError(f"layer {desc} takes {m.in_channels} channels but receives shape {cur}")
            if m.groups != 1 or _pair(m.dilation, "dilation", desc) != 1:
                raise ValueError(f"unsupported layer {desc}: groups and dilation must be 1")
            if m.padding_mode != "zeros":
                raise ValueError(f"unsupported layer {desc}: padding_mode must be 'zeros'")
            k = _pair(m.kernel_size, "kernel_size", desc)
            s = _pair(m.stride, "stride", desc)
            if m.padding == "valid":
                padding = 0
            elif m.padding == "same" and k % 2 == 1:
                padding = (k - 1) // 2
            elif isinstance(m.padding, str):
                raise ValueError(f"unsupported layer {desc}: padding {m.padding!r} with kernel {k}")
            else:
                padding = _pair(m.padding, "padding", desc)
            bias = _f32(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
            layers.append({"type": "conv2d", "in_channels": m.in_channels,
                           "out_channels": m.out_channels, "kernel": k, "stride": s,
                           "padding": padding, "input_hw": (cur[1], cur[2]),
                           "weight": _f32(m.weight), "bias": bias})
            cur = (m.out_channels, (cur[1] + 2 * padding - k) // s + 1,
                   (cur[2] + 2 * padding - k) // s + 1)
        elif isinstance(m, nn.MaxPool2d):
            if len(cur) != 3:
                raise ValueError(f"layer {desc} needs (channels, height, width) input, gets {cur}")
            k = _pair(m.kernel_size, "kernel_size", desc)
            s = _pair(m.stride if m.stride is not None else m.kernel_size, "stride", desc)
            if _pair(m.padding, "padding", desc) != 0 or _pair(m.dilation, "dilation", desc) != 1 \
                    or m.ceil_mode or m.return_indices:
                raise ValueError(
                    f"unsupported layer {desc}: only padding 0, dilation 1, ceil_mode False")
            layers.append({"type": "maxpool2d", "kernel": k, "stride": s, "channels": cur[0],
                           "input_hw": (cur[1], cur[2])})
            cur = (cur[0], (cur[1] - k) // s + 1, (cur[2] - k) // s + 1)
        else:
            raise ValueError(
                f"unsupported layer {desc}: ppml runs Linear, Conv2d, ReLU, MaxPool2d, "
                "Flatten, Dropout and Identity")
    if not layers:
        raise ValueError("the module has no layers")
    model = Model.from_layers(shape, layers, arch=type(module).__name__)

    # A module's forward may use its layers in another order, skip some or add
    # functional calls: compare with torch on a few random inputs so that a
    # model that does not chain its layers in order is an error, not a
    # silently different model.
    g = torch.Generator().manual_seed(0)
    probe = torch.randn((4,) + shape, generator=g)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            want = module(probe).reshape(4, -1).float().cpu().numpy()
    except Exception as e:  # noqa: BLE001 - any failure means the shapes do not chain
        raise ValueError(f"the module does not run on input_shape {shape}: {e}") from None
    finally:
        module.train(was_training)
    got = model.logits(probe.numpy())
    if want.shape != got.shape or not np.allclose(want, got, rtol=1e-3, atol=1e-3 * (1 + np.abs(want).max())):
        raise ValueError(
            f"{type(module).__name__}.forward does not compute its layers in registration order "
            "(functional calls or reordering in forward() are not supported); "
            "wrap the layers in nn.Sequential")
    return model
