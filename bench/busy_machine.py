#!/usr/bin/python3
"""cnn's speed on a busy machine: images/s alone and beside processes that keep every core busy.

  python3 bench/busy_machine.py [MODEL ...] [--beside loops|itself] [--busy N] [--rounds 3]
                                [--repeat 3] [--torch] [--cnn build/release/cnn]

Compares two settings of the same binary: idle OpenMP threads spinning 3,000 times before they
sleep (cnn's own setting, include/cnn/openmp_spin.hpp) and 300,000 times (libgomp's default,
GOMP_SPINCOUNT=300000, which cnn ran with before). MODEL is a preset or a spec file (default:
lenet5 resnet). Each round runs, model by model, `cnn bench` alone with each setting, then
starts --busy processes that spin in a loop (default: one per core) and runs both again, then
stops them; with --beside itself, the busy figures are instead those of two copies of the same
`cnn bench` run at once, summed (two trainings on one machine). A row gives the medians over
the rounds of training (batch 64) and inference (batch 256) images/s alone and busy, "kept"
(busy over alone), and each round's busy figure: they scatter by an order of magnitude from
round to round. With --torch (run it with /usr/bin/python3; needs what compare_torch.py
needs; not with --beside itself), PyTorch's figures the same way, with compare_torch.py's
settings and the better of NCHW and channels_last.

No targets and no test: these are timings of a shared machine, for the design notes ("OpenMP
threads on a busy machine").
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SETTINGS = (("cnn, 3,000 spins (its own)", None), ("cnn, 300,000 (libgomp's default)", "300000"))


def cnn_figures(cnn, model, repeat, spin_count, copies=1):
    """Training and inference images/s of `cnn bench`, with GOMP_SPINCOUNT=spin_count, or with
    neither it nor OMP_WAIT_POLICY set (cnn then sets its own); summed over `copies` runs at
    once."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if spin_count is not None:
        env["GOMP_SPINCOUNT"] = spin_count
    runs = [subprocess.Popen([cnn, "bench", "--model", model, "--repeat", str(repeat), "--json"],
                             stdout=subprocess.PIPE, text=True, env=env) for _ in range(copies)]
    total = {"train": 0.0, "infer": 0.0}
    for run in runs:
        out, _ = run.communicate()
        if run.returncode != 0:
            sys.exit("busy_machine.py: cnn bench --model %s failed (exit %d)" % (model,
                                                                            run.returncode))
        figures = json.loads(out)
        total["train"] += figures["train_images_per_s"]
        total["infer"] += figures["infer_images_per_s"]
    return total


def start_busy(count):
    """`count` processes that keep a core busy each, until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(processes):
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=["lenet5", "resnet"], metavar="MODEL")
    parser.add_argument("--cnn", default=os.path.join(ROOT, "build", "release", "cnn"))
    parser.add_argument("--beside", choices=("loops", "itself"), default="loops",
                        help="busy loops (default), or a second copy of the same run")
    parser.add_argument("--busy", type=int, default=os.cpu_count(),
                        help="busy processes beside the runs (default: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="times the whole comparison runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (their median)")
    parser.add_argument("--torch", action="store_true", help="PyTorch's figures too")
    args = parser.parse_args()
    if min(args.busy, args.rounds, args.repeat) < 1:
        parser.error("--busy, --rounds and --repeat must be at least 1")
    if args.torch and args.beside == "itself":
        parser.error("--torch runs PyTorch in this process: use it with --beside loops")
    ct = None
    if args.torch:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import compare_torch as ct  # sets PyTorch up as compare_torch.py does
        for model in args.models:
            ct.INFOS[model] = ct.torch_interop.cnn_info(args.cnn, model)
    threads = os.cpu_count()

    def measure_all(copies=1):
        out = {}
        for model in args.models:
            for name, spin_count in SETTINGS:
                out[(model, name)] = cnn_figures(args.cnn, model, args.repeat, spin_count, copies)
            if ct is not None:
                best = ct.best_torch_figures(model, threads, args.repeat)
                out[(model, "PyTorch")] = {"train": best["train"], "infer": best["infer"]}
        return out

    rounds = []
    for _ in range(args.rounds):
        alone = measure_all()
        if args.beside == "itself":
            busy = measure_all(copies=2)
        else:
            busy_processes = start_busy(args.busy)
            try:
                busy = measure_all()
            finally:
                stop(busy_processes)
        rounds.append((alone, busy))

    beside = ("a second copy of itself (busy: the two copies' sum)" if args.beside == "itself"
              else "%d busy process%s" % (args.busy, "es" if args.busy > 1 else ""))
    print("cnn on a busy machine: %d threads, beside %s; medians of %d round%s, each figure the "
          "median of %d runs (images/s)" % (threads, beside, args.rounds,
                                             "s" if args.rounds > 1 else "", args.repeat))
    print()
    print("| model | figure | setting | alone | busy | kept | busy, round by round |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for key in rounds[0][0]:
        model, name = key
        for figure in ("train", "infer"):
            alone = statistics.median(r[0][key][figure] for r in rounds)
            busy_rounds = [r[1][key][figure] for r in rounds]
            busy = statistics.median(busy_rounds)
            print("| %s | %s | %s | %.0f | %.0f | %.0f%% | %s |" % (
                model, "training" if figure == "train" else "inference", name, alone, busy,
                100 * busy / alone, ", ".join("%.0f" % b for b in busy_rounds)))


if __name__ == "__main__":
    main()
