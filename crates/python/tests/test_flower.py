"""Flower smoke test: examples/flower/run.sh in Flower's DEPLOYMENT runtime on
loopback (one SuperLink, 2 SuperNodes, `flwr run`), 2 rounds, ppml clients and
Flower SecAgg+ aggregation. Checks the run script's JSON contract."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")
ROOT = Path(__file__).resolve().parents[3]


def test_flower_deployment_two_supernodes_two_rounds():
    env = dict(os.environ)
    # Run in this interpreter's venv (flwr and ppml are installed here).
    env.setdefault("PPML_VENV", sys.prefix)
    env.setdefault("PPML_DATA", str(ROOT / "data" / "mnist"))
    p = subprocess.run([str(ROOT / "examples" / "flower" / "run.sh"), "--supernodes", "2", "--rounds", "2"],
                       capture_output=True, text=True, timeout=900, env=env)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-4000:])
    res = json.loads(lines[-1])
    for key in ("rounds", "accuracy", "seconds_per_round", "supernodes"):
        assert key in res, res
    assert res["rounds"] == 2 and res["supernodes"] == 2
    assert res["aggregation"] == "flower-secaggplus" and res["runtime"] == "flower-deployment"
    assert res["seconds_per_round"] > 0
    assert res["failed_client_updates"] == 0
    # Two rounds of two 600-image clients: far above chance (0.1), and rising.
    acc = res["accuracy_per_round"]
    assert len(acc) == 3 and acc[0] < 0.2 and res["accuracy"] > 0.4 and acc[2] > acc[0], res
