"""CrypTen 2-party (TTP) encrypted inference of SecureNN's MNIST networks B, C, D (issue 16),
the same layers as ppml's `net-b`, `net-c`, `net-d` (docs/NETWORKS.md):
  net-b (MiniONN): conv5x5 1->16, ReLU, maxpool 2, conv5x5 16->16, ReLU, maxpool 2, fc 256->100, ReLU, fc 100->10
  net-c (LeNet):   conv5x5 1->20, ReLU, maxpool 2, conv5x5 20->50, ReLU, maxpool 2, fc 800->500, ReLU, fc 500->10
  net-d (Chameleon): conv5x5 1->5 stride 2 padding 2, ReLU, fc 980->100, ReLU, fc 100->10
Each ReLU runs after its max-pool (the same values, 4x fewer ReLUs), as ppml's private plan does.
Timing only (random weights, random inputs). CrypTen is never a dependency of ppml: run it
from the reference venv, pinned to one core, e.g.
  taskset -c 0 /tmp/ref-venv/bin/python benches/support/crypten_bcd.py --net net-b --n 64 --bs 32
Timed: input sharing + encrypted forward + reveal of the logits, all batches (model
encryption excluded). Prints one JSON line per network. On a modern torch, CrypTen 0.4.1
needs the import shims of crypten_compat.py (directory: $CRYPTEN_COMPAT_DIR, default
/work/shared/reference/crypten)."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.environ.get("CRYPTEN_COMPAT_DIR", "/work/shared/reference/crypten"))
try:
    import crypten_compat  # noqa: F401  (must come before `import crypten`)
except ImportError:
    pass
import crypten  # noqa: E402
import crypten.communicator as comm  # noqa: E402
import torch  # noqa: E402
from crypten.config import cfg  # noqa: E402

F = torch.nn.functional


class Chameleon(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = torch.nn.Conv2d(1, 5, 5, stride=2, padding=2)
        s.f1 = torch.nn.Linear(980, 100)
        s.f2 = torch.nn.Linear(100, 10)

    def forward(s, x):
        x = torch.relu(s.c1(x))
        return s.f2(torch.relu(s.f1(x.flatten(1))))


class LeNetLike(torch.nn.Module):
    """net-b (16, 16, 100) and net-c (20, 50, 500)."""

    def __init__(s, c1, c2, hidden):
        super().__init__()
        s.c1 = torch.nn.Conv2d(1, c1, 5)
        s.c2 = torch.nn.Conv2d(c1, c2, 5)
        s.f1 = torch.nn.Linear(c2 * 16, hidden)
        s.f2 = torch.nn.Linear(hidden, 10)

    def forward(s, x):
        x = torch.relu(F.max_pool2d(s.c1(x), 2))
        x = torch.relu(F.max_pool2d(s.c2(x), 2))
        return s.f2(torch.relu(s.f1(x.flatten(1))))


NETS = {
    "net-b": lambda: LeNetLike(16, 16, 100),
    "net-c": lambda: LeNetLike(20, 50, 500),
    "net-d": lambda: Chameleon(),
}

ap = argparse.ArgumentParser()
ap.add_argument("--net", default="all", help="net-b, net-c, net-d or all")
ap.add_argument("--provider", default="TTP")
ap.add_argument("--n", type=int, default=64)
ap.add_argument("--bs", type=int, default=32)
args = ap.parse_args()
cfg.mpc.provider = args.provider
cfg.communicator.verbose = True
names = list(NETS) if args.net == "all" else [args.net]


def family_cpu_seconds():
    """CPU seconds (user + system) of every process the launcher started: both
    parties and the TTP server (Linux /proc; clock ticks of 1/100 s)."""
    parent, total = os.getppid(), 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2 :].split()
        if int(f[1]) == parent:
            total += (int(f[11]) + int(f[12])) / tick
    return total


@crypten.mpc.run_multiprocess(world_size=2)
def party():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in names:
        m = crypten.nn.from_pytorch(NETS[name]().eval(), torch.zeros(1, 1, 28, 28))
        m.encrypt(src=0)
        m.eval()
        x = torch.rand(args.n, 1, 28, 28)
        comm.get().barrier()
        crypten.reset_communication_stats()
        t0, c0, f0 = time.perf_counter(), time.process_time(), family_cpu_seconds()
        with crypten.no_grad():
            for i in range(0, args.n, args.bs):
                m(crypten.cryptensor(x[i : i + args.bs], src=1)).get_plain_text()
        comm.get().barrier()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        fam = family_cpu_seconds() - f0
        s = comm.get().get_communication_stats()
        if comm.get().get_rank() == 0:
            print(
                json.dumps(
                    {
                        "net": name,
                        "provider": args.provider,
                        "images": args.n,
                        "batch": args.bs,
                        "seconds": dt,
                        "cpu_seconds_rank0": cpu,
                        "cpu_seconds_all_processes": fam,
                        "images_per_cpu_s": args.n / fam if fam > 0 else None,
                        "images_per_s": args.n / dt,
                        "bytes_counter_rank0": s["bytes"],
                        "bytes_per_image_rank0": s["bytes"] / args.n,
                        "rounds": s["rounds"],
                    }
                ),
                flush=True,
            )


party()
