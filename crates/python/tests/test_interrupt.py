"""Ctrl-C (SIGINT) interrupts long Rust runs: the GIL is released and the
bindings poll for signals."""
import _thread
import threading
import time

import numpy as np
import pytest

import ppml


def _interrupt_after(seconds):
    t = threading.Timer(seconds, _thread.interrupt_main)
    t.start()
    return t


def test_ctrl_c_stops_training(mnist):
    xtr, ytr, _, _ = mnist
    m = ppml.Model.arch("2nn", seed=0)
    _interrupt_after(0.5)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        m.fit(xtr, ytr, epochs=100, batch_size=8)  # minutes of work
    assert time.monotonic() - t0 < 5


def test_ctrl_c_stops_encrypted_inference(mnist):
    _, _, xte, _ = mnist
    m = ppml.Model.arch("mlp500", seed=0)
    x = np.concatenate([xte] * 3)  # 30,000 images: tens of seconds
    _interrupt_after(0.5)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ppml.encrypted_predict(m, x, batch_size=500)
    assert time.monotonic() - t0 < 5


def test_other_threads_run_while_rust_works(mnist):
    """The GIL is released: a Python thread makes progress during fit()."""
    xtr, ytr, _, _ = mnist
    m = ppml.Model.arch("2nn", seed=0)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    th = threading.Thread(target=ticker)
    th.start()
    t0 = time.monotonic()
    m.fit(xtr[:20000], ytr[:20000], epochs=1, batch_size=16)
    elapsed = time.monotonic() - t0
    stop.set()
    th.join()
    during = [t for t in ticks if t0 < t < t0 + elapsed]
    assert elapsed > 0.2
    assert len(during) > 5, (len(during), elapsed)
