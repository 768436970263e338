"""ServerApp: FedAvg whose fit step runs Flower's SecAgg+ workflow (the server
learns only the weighted sum of the clients' updates), with centralized
evaluation of the global model by ppml on the 10,000 MNIST test images."""
import json
import statistics
import time

from flwr.app import Context
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from ppml_flower import task

app = ServerApp()


class CheckedFedAvg(FedAvg):
    """FedAvg that counts failed clients and refuses a round in which no client
    succeeded (instead of silently keeping the old model)."""

    failures = 0

    def aggregate_fit(self, server_round, results, failures):
        CheckedFedAvg.failures += len(failures)
        if not results:
            raise RuntimeError(f"round {server_round}: no client update arrived "
                               f"({len(failures)} failures, first: {failures[:1]!r})")
        return super().aggregate_fit(server_round, results, failures)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds = int(cfg["num-server-rounds"])
    nodes = int(cfg.get("num-supernodes", 0)) or None
    _, _, xte, yte = task.mnist()
    model = task.model()
    log = {"s": [], "e": [], "acc": [], "loss": []}

    def evaluate_fn(rnd, arrays, _config):
        log["s"].append(time.perf_counter())
        r = task.from_ndarrays(model, arrays).evaluate(xte, yte)
        log["acc"].append(r["accuracy"])
        log["loss"].append(r["loss"])
        log["e"].append(time.perf_counter())
        print(f"[ppml-server] round {rnd} accuracy {r['accuracy']:.4f} loss {r['loss']:.4f}", flush=True)
        return r["loss"], {"accuracy": r["accuracy"]}

    n = nodes or 2
    strategy = CheckedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_fit_clients=n,
        min_evaluate_clients=n if float(cfg["fraction-evaluate"]) > 0 else 0,
        min_available_clients=n,
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda rnd: {"server-round": rnd},
        initial_parameters=ndarrays_to_parameters(task.to_ndarrays(model)),
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    # num_shares=1.0: every client holds a share of every other's keys (the
    # complete graph at these sizes); half of them reconstruct (at least 2).
    secagg = bool(cfg.get("secagg", True))
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.5)
        if secagg else None
    )
    t0 = time.perf_counter()
    workflow(grid, legacy)
    wall = time.perf_counter() - t0
    # Round r's time: from the end of evaluation r-1 to the start of evaluation r
    # (what the PyTorch reference app measures).
    rt = [log["s"][i] - log["e"][i - 1] for i in range(1, len(log["s"]))]
    res = {
        "rounds": len(rt),
        "supernodes": n,
        "accuracy": log["acc"][-1] if log["acc"] else None,
        "loss": log["loss"][-1] if log["loss"] else None,
        "accuracy_per_round": log["acc"],
        "round_seconds": rt,
        "seconds_per_round": statistics.median(rt) if rt else None,
        "seconds_per_round_excl_first": statistics.median(rt[1:]) if len(rt) > 1 else None,
        "wall_seconds": wall,
        "aggregation": "flower-secaggplus" if secagg else "plain-fedavg",
        "fraction_evaluate": float(cfg["fraction-evaluate"]),
        "clients": "ppml",
        "failed_client_updates": CheckedFedAvg.failures,
    }
    print("[ppml-server] " + json.dumps(res), flush=True)
    if cfg.get("result-file"):
        with open(str(cfg["result-file"]), "w") as f:
            json.dump(res, f)
