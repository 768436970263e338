#!/usr/bin/env python3
"""Reference epsilons for ppml's RDP accountant (crates/fedavg/src/dp.rs), from Opacus.

Opacus's package __init__ imports torch, so this script loads ONLY the file
opacus/accountants/analysis/rdp.py (numpy + scipy) with importlib, and uses its
compute_rdp / get_privacy_spent over Opacus's RDPAccountant.DEFAULT_ALPHAS.

Setup (no torch needed):
    python3 -m venv /tmp/dpvenv
    /tmp/dpvenv/bin/pip install numpy scipy
    /tmp/dpvenv/bin/pip install --no-deps opacus
    /tmp/dpvenv/bin/python docs/dp_reference.py

Prints a Rust table `(q, z, steps, delta, epsilon)` to paste into dp.rs / tests/dp_accountant.rs.
"""
import importlib.metadata
import importlib.util
import pathlib
import sys

import numpy as np
import scipy


def load_rdp_module():
    dist = importlib.metadata.distribution("opacus")
    path = pathlib.Path(dist.locate_file("opacus/accountants/analysis/rdp.py"))
    spec = importlib.util.spec_from_file_location("opacus_rdp_standalone", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


# Same as opacus.accountants.rdp.RDPAccountant.DEFAULT_ALPHAS (copied: that module imports torch).
DEFAULT_ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))

# (q, noise_multiplier z, steps, delta)
SETTINGS = [
    (0.1, 1.0, 100, 1e-5),
    (0.01, 1.1, 1000, 1e-5),
    (0.1, 0.8, 50, 1e-5),
    (0.05, 2.0, 500, 1e-6),
    (1.0, 5.0, 20, 1e-5),      # q = 1: no subsampling, rdp = alpha / (2 z^2) per step
    (0.1, 10.0, 1000, 1e-5),   # large z
    (0.1, 1.2, 200, 1e-5),     # DP-FedAvg-like: 10 of 100 clients per round
    (0.001, 0.7, 10000, 1e-5), # tiny q, small z (fractional-order series with sign changes)
    (0.3, 1.5, 30, 1e-5),
    (0.02, 0.5, 100, 1e-5),    # small z: large epsilon
    (0.03, 1.0, 2, 1e-5),      # tests/cli_secrets.rs: the CLI DP run (100 clients, q = 0.03, 2 rounds)
]


def main():
    rdp_mod, path = load_rdp_module()
    version = importlib.metadata.version("opacus")
    print(f"// opacus {version} ({path.name} loaded standalone), numpy {np.__version__}, "
          f"scipy {scipy.__version__}, python {sys.version.split()[0]}")
    print("// (q, noise_multiplier, steps, delta, epsilon, best_order)")
    for q, z, steps, delta in SETTINGS:
        rdp = rdp_mod.compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=DEFAULT_ALPHAS)
        eps, order = rdp_mod.get_privacy_spent(orders=DEFAULT_ALPHAS, rdp=rdp, delta=delta)
        print(f"({q!r}, {z!r}, {steps}, {delta!r}, {float(eps)!r}, {float(order)!r}),")


if __name__ == "__main__":
    main()
