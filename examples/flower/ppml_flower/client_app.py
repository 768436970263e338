"""ClientApp: local SGD and evaluation with ppml's Rust code on the node's
MNIST partition. `secaggplus_mod` masks the update: the server only sees the
sum over the round's clients (Flower's SecAgg+)."""
import time

import numpy as np
from flwr.app import Context
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod

from ppml_flower import task


class PpmlClient(NumPyClient):
    def __init__(self, context: Context):
        self.pid = int(context.node_config["partition-id"])
        self.cfg = context.run_config

    def _data(self, server_round, train=True):
        xtr, ytr, xte, yte = task.mnist()
        n = int(self.cfg["num-partitions"])
        part = task.partition_of_node(self.pid, server_round, n)
        idx = task.partitions(n)[part]
        return part, xtr[idx], ytr[idx]

    def fit(self, parameters, config):
        t0 = time.time()
        rnd = int(config.get("server-round", config.get("server_round", 0)))
        part, x, y = self._data(rnd)
        m = task.from_ndarrays(task.model(), parameters)
        r = m.fit(x, y, epochs=int(self.cfg["local-epochs"]), batch_size=int(self.cfg["batch-size"]),
                  lr=float(self.cfg["lr"]), momentum=0.0, seed=part * 1009 + rnd)
        print(f"[ppml-client] node {self.pid} round {rnd}: partition {part}, loss {r['loss']:.4f}, "
              f"train {r['seconds']:.2f}s, total {time.time() - t0:.2f}s", flush=True)
        return task.to_ndarrays(m), len(y), {"loss": float(r["loss"])}

    def evaluate(self, parameters, config):
        # Local evaluation: the global model on this node's share of the test set.
        _, _, xte, yte = task.mnist()
        m = task.from_ndarrays(task.model(), parameters)
        idx = np.array_split(np.arange(len(yte)), int(self.cfg["num-partitions"]))[self.pid % int(self.cfg["num-partitions"])]
        r = m.evaluate(xte[idx], yte[idx])
        return float(r["loss"]), len(idx), {"accuracy": float(r["accuracy"])}


def client_fn(context: Context):
    return PpmlClient(context).to_client()


def secaggplus_when_asked(msg, context, call_next):
    """Flower's SecAgg+ mod for the messages of its workflow; other messages
    (plain FedAvg runs with `secagg=false`, evaluation) pass straight through."""
    if "secaggplus_configs" in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp(client_fn=client_fn, mods=[secaggplus_when_asked])
