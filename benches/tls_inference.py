#!/usr/bin/env python3
"""Encrypted inference over TLS vs --insecure links, three processes on core 0.

usage: benches/tls_inference.py ARCH COUNT REPS [--capture] [--only=tls|--only=insecure]

Run from the repository root after `cargo build --release`. Makes keys and a
parties file in a temporary directory (TLS on ports 7400-7404, plaintext on
7410-7414), runs TLS and plaintext alternately REPS times, and prints one
JSON line per run: wall images/s, CPU seconds of the three processes
(getrusage of children), bytes counted by the channels, and with --capture
(root + tcpdump) the TCP payload bytes actually on the wire; then a summary line
(medians per mode, ratio of medians and median of the per-pair ratios). The environment variable PPML
overrides the binary (e.g. a wrapper that runs each party under `perf record`);
PPML_CORE picks the core all three processes are pinned to (default 0).
"""
import json, os, resource, statistics, struct, subprocess, sys, tempfile, time

ROOT = os.getcwd()
PPML = os.environ.get("PPML", os.path.join(ROOT, "target/release/ppml"))
CORE = os.environ.get("PPML_CORE", "0")
ROLES = ["p0", "p1", "p2", "model-owner", "data-owner"]


def setup(d):
    for r in ROLES:
        subprocess.run([PPML, "keygen", "--name", r, "--out", os.path.join(d, "keys")],
                       check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "parties.toml"), "w") as f:
        for i, r in enumerate(ROLES):
            f.write(f'[[party]]\nname = "{r}"\naddress = "127.0.0.1:{7400 + i}"\n'
                    f'certificate = "keys/{r}.crt"\n\n')


def run(d, mode, arch, count):
    if mode == "tls":
        link = ["--parties", os.path.join(d, "parties.toml"), "--keys", os.path.join(d, "keys")]
    else:
        link = ["--insecure", "--peers", ",".join(f"127.0.0.1:{7410 + i}" for i in range(5))]
    common = link + ["--data", os.path.join(ROOT, "data/mnist"), "--json", "--batch", "1000"]
    base = ["taskset", "-c", CORE, PPML, "party"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    ps = [subprocess.Popen(base + ["--role", "p2"] + common, stdout=subprocess.PIPE),
          subprocess.Popen(base + ["--role", "p1,data-owner", "--count", str(count)] + common,
                           stdout=subprocess.PIPE),
          subprocess.Popen(base + ["--role", "p0,model-owner", "--arch", arch, "--seed", "1"] + common,
                           stdout=subprocess.PIPE)]
    outs = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in ps]
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dict(mode=mode, arch=arch, images=outs[1]["images"], wall=wall,
                images_per_second=outs[1]["images_per_second"], cpu_seconds=cpu,
                counted_bytes=sum(o["bytes_sent"] for o in outs))


def tcp_payload(path):
    d = open(path, "rb").read()
    l2 = {1: 14, 113: 16}.get(struct.unpack("<I", d[20:24])[0], 0)
    off, total = 24, 0
    while off + 16 <= len(d):
        incl = struct.unpack("<IIII", d[off:off + 16])[2]
        ip = d[off + 16 + l2:off + 16 + incl]
        off += 16 + incl
        ihl = (ip[0] & 15) * 4
        total += struct.unpack(">H", ip[2:4])[0] - ihl - (ip[ihl + 12] >> 4) * 4
    return total


def main():
    arch, count, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    capture = "--capture" in sys.argv
    modes = [m for m in ["tls", "insecure"] if f"--only={m}" in sys.argv] or ["tls", "insecure"]
    runs = []
    with tempfile.TemporaryDirectory() as d:
        setup(d)
        for _ in range(reps):
            for mode in modes:
                ports = range(7400, 7405) if mode == "tls" else range(7410, 7415)
                dump = None
                if capture:
                    pcap = os.path.join(d, mode + ".pcap")
                    flt = "tcp and (" + " or ".join(f"port {p}" for p in ports) + ")"
                    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "128", "-w", pcap, flt],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(2)
                r = run(d, mode, arch, count)
                if dump:
                    time.sleep(1)
                    dump.terminate()
                    dump.wait()
                    r["tcp_payload_bytes"] = tcp_payload(pcap)
                print(json.dumps(r), flush=True)
                runs.append(r)
    summarize(runs)


def summarize(runs):
    """A last JSON line: per mode the median images/s and CPU seconds, and
    TLS over plaintext both as the ratio of medians and as the median of the
    per-pair ratios (runs of one mode differ by up to 25% between minutes on
    a shared machine; alternating pairs share their minute)."""
    med = lambda v: statistics.median(v) if v else None
    by = {m: [r for r in runs if r["mode"] == m] for m in ("tls", "insecure")}
    out = {"summary": True, "arch": runs[0]["arch"] if runs else None}
    for m, rs in by.items():
        out[m] = {"runs": len(rs), "images_per_second": med([r["images_per_second"] for r in rs]),
                  "cpu_seconds": med([r["cpu_seconds"] for r in rs])}
    t, p = by["tls"], by["insecure"]
    if t and p:
        out["ratio_of_medians"] = out["tls"]["images_per_second"] / out["insecure"]["images_per_second"]
        out["median_pair_ratio"] = med([a["images_per_second"] / b["images_per_second"]
                                        for a, b in zip(t, p)])
        out["cpu_ratio_of_medians"] = out["insecure"]["cpu_seconds"] / out["tls"]["cpu_seconds"]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
