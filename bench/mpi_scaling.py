#!/usr/bin/env python3
"""Data-parallel training over MPI on this machine, and a scaling model built on it.

Measures, with cnn's own benchmark (cnn bench; no PyTorch needed):
  1. for each model, training images/s of 2 ranks x 1 thread (mpirun -np 2) against one
     process x 2 threads at the same global batch, and the all-reduce's time a step;
  2. MPI_Allreduce time against message size here (cnn bench --allreduce);
  3. the compute time of one training step per model (one process, all cores: one node);
then projects the efficiency of 2 to 64 nodes on 1, 10 and 100 Gb/s networks (ring
all-reduce; no overlap of the all-reduce with the backward pass, as cnn does it) and prints
everything as Markdown (docs/distributed.md holds a recorded run).

usage: bench/mpi_scaling.py [--cnn build/release/cnn] [--models lenet5 convnet resnet]
                            [--repeat 5] [--pairs 5]
"""

import argparse
import json
import os
import subprocess
import sys

BATCH = {"lenet5": 64, "convnet": 64, "resnet": 128}  # each preset's training batch
NETWORKS = [  # name, bandwidth in bytes/s, per-message latency in s (typical, assumed)
    ("1 Gb/s", 1e9 / 8, 50e-6),
    ("10 Gb/s", 10e9 / 8, 20e-6),
    ("100 Gb/s", 100e9 / 8, 5e-6),
]
NODES = [2, 4, 8, 16, 32, 64]


def run_json(command):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def ring_allreduce_seconds(nodes, message_bytes, bandwidth, latency):
    """Ring all-reduce: 2 (p - 1) steps, each moving message/p bytes over every link."""
    steps = 2 * (nodes - 1)
    return steps * (latency + message_bytes / nodes / bandwidth)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn", default="build/release/cnn")
    parser.add_argument("--models", nargs="+", default=["lenet5", "convnet", "resnet"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5,
                        help="interleaved single/ranks runs per model (the median is shown)")
    args = parser.parse_args()
    cnn = os.path.abspath(args.cnn)
    mpirun = ["mpirun", "-q", "-np", "2"]
    cores = os.cpu_count()

    print(f"## 2 ranks x 1 thread against 1 process x {cores} threads (this machine; the median "
          f"of {args.pairs} interleaved pairs)\n")
    print("| model | batch | 1 process img/s | 2 ranks img/s | ratio | all-reduce ms/step "
          "| step ms | gradient bytes |")
    print("|---|---|---|---|---|---|---|---|")
    steps = {}
    ratios = {}
    for model in args.models:
        batch = BATCH.get(model, 64)
        common = ["bench", "--model", model, "--batch", str(batch), "--repeat", str(args.repeat),
                  "--json"]
        # Interleaved pairs, so that the machine's noise hits both alike; the median pair.
        pairs = []
        for _ in range(args.pairs):
            s = run_json([cnn] + common + ["--threads", str(cores)])
            r = run_json(mpirun + [cnn] + common + ["--threads", "1"])
            pairs.append((r["train_images_per_s"] / s["train_images_per_s"], s, r))
        pairs.sort(key=lambda p: p[0])
        ratio, s, r = pairs[len(pairs) // 2]
        ratios[model] = [p[0] for p in pairs]
        steps[model] = (batch, 1.0 / s["train_images_per_s"] * batch, r["gradient_bytes"])
        print(f"| {model} | {batch} | {s['train_images_per_s']:.0f} | "
              f"{r['train_images_per_s']:.0f} | {ratio:.2f} | {r['allreduce_ms_per_step']:.3f} | "
              f"{r['step_ms']:.2f} | {r['gradient_bytes']:,} |")

    print("\nRatios of every pair, lowest to highest: " +
          "; ".join(f"{m} " + ", ".join(f"{x:.2f}" for x in v) for m, v in ratios.items()) + ".")

    sweep = run_json(mpirun + [cnn, "bench", "--allreduce", "--repeat", str(args.repeat),
                               "--json"])
    print("\n## MPI_Allreduce on this machine (2 ranks, shared memory)\n")
    print("| bytes | ms | bus GB/s |")
    print("|---|---|---|")
    for row in sweep["allreduce"]:
        print(f"| {row['bytes']:,} | {row['ms']:.4f} | {row['bus_gb_per_s']:.2f} |")

    print("\n## Projected efficiency, weak scaling (each node: one process on all its cores, "
          "the preset's batch; global batch = nodes x batch)\n")
    print("Efficiency = compute / (compute + all-reduce), the step's compute time measured "
          "above on one node of this machine's cores, the all-reduce a ring over the network "
          "(2 (p - 1) messages of gradient/p bytes, latency per message as assumed below).\n")
    header = "| model | step compute ms | network | " + " | ".join(f"{n} nodes" for n in NODES)
    print(header + " |")
    print("|---|---|---|" + "---|" * len(NODES))
    for model in args.models:
        batch, compute, message = steps[model]
        for name, bandwidth, latency in NETWORKS:
            cells = []
            for nodes in NODES:
                t = ring_allreduce_seconds(nodes, message, bandwidth, latency)
                cells.append(f"{compute / (compute + t):.2f}")
            print(f"| {model} | {compute * 1e3:.1f} | {name} | " + " | ".join(cells) + " |")
    print("\nAssumed latency per message: " +
          ", ".join(f"{name}: {latency * 1e6:.0f} us" for name, _, latency in NETWORKS) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
