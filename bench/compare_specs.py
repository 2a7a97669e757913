#!/usr/bin/python3
"""cnn against PyTorch on any model: training and inference images/s, side by side.

  /usr/bin/python3 bench/compare_specs.py MODEL [MODEL ...] [--batch 64] [--threads 2]
                                          [--rounds 3] [--repeat 3] [--cnn build/release/cnn]

MODEL is a preset name or a spec file (bench/specs/ has the residual networks the resnet preset
was weighed against). Each model runs as compare_torch.py runs the presets, with the same
PyTorch settings (OpenBLAS, the allocator kept warm, the better of NCHW and channels_last for
each figure): training at --batch images a step (SGD with momentum: forward, loss, backward,
update), inference at batch 256, on --threads threads. The whole comparison runs --rounds
times, PyTorch and `cnn bench` alternating model by model; a row gives each side's median
over the rounds and the median and range of the rounds' ratios. No targets: this answers
"how does my network compare", and whether another network would change a preset's ratio.
Needs what compare_torch.py needs (python3-torch, libopenblas0-pthread).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_torch as ct  # noqa: E402  (sets up PyTorch as compare_torch.py does, then imports it)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="preset name or spec file")
    parser.add_argument("--cnn", default=os.path.join(ct.ROOT, "build", "release", "cnn"))
    parser.add_argument("--batch", type=int, default=64, help="training batch (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="threads of both (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="times the comparison runs (default 3)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per figure within a round, their median taken (default 3)")
    args = parser.parse_args()
    if min(args.batch, args.threads, args.rounds, args.repeat) < 1:
        parser.error("--batch, --threads, --rounds and --repeat must be at least 1")
    for model in args.models:
        try:
            ct.INFOS[model] = ct.torch_interop.cnn_info(args.cnn, model)
        except ct.subprocess.CalledProcessError as e:  # cnn said why on one line
            parser.error("%s: %s" % (model, e.stderr.strip() or "cnn info failed"))

    torch_rounds = {m: [] for m in args.models}
    cnn_rounds = {m: [] for m in args.models}
    for _ in range(args.rounds):
        for model in args.models:
            torch_rounds[model].append(ct.best_torch_figures(model, args.threads, args.repeat,
                                                             args.batch))
            cnn_rounds[model].append(ct.cnn_figures(args.cnn, model, args.threads, args.repeat,
                                                    args.batch))

    print("cnn vs PyTorch %s, %s, %s, %d threads, training batch %d; %d round%s, each figure the "
          "median of %d runs; cnn / PyTorch: the median of the rounds' ratios and their range" % (
              ct.torch.__version__, ct.datetime.date.today().isoformat(), ct.cpu_model(),
              args.threads, args.batch, args.rounds, "s" if args.rounds > 1 else "", args.repeat))
    print()
    print("| model | parameters | MFLOP/image | figure | PyTorch | PyTorch layout | cnn | "
          "cnn / PyTorch | range |")
    print("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for model in args.models:
        info = ct.INFOS[model]
        for what, torch_key, cnn_key in (("training images/s", "train", "train_images_per_s"),
                                         ("inference images/s, batch 256", "infer",
                                          "infer_images_per_s")):
            ts = [t[torch_key] for t in torch_rounds[model]]
            cs = [c[cnn_key] for c in cnn_rounds[model]]
            ratios = [c / t for t, c in zip(ts, cs)]
            layouts = [t[torch_key + "_layout"] for t in torch_rounds[model]]
            layout = max(set(layouts), key=layouts.count)
            print("| %s | %d | %.1f | %s | %.0f | %s | %.0f | %.2fx | %.2f-%.2f |" % (
                info["spec"].get("name", model), info["parameters"], info["flops"] / 1e6, what,
                statistics.median(ts), layout, statistics.median(cs), statistics.median(ratios),
                min(ratios), max(ratios)))
    print()
    print("Round trip of a cache line between cnn's two threads, ns, before / after each cnn run "
          "(on the Zen 4 of 2026-12-05 about 50-90 where the cores shared a cache and about "
          "320-400 where they did not; an Intel Xeon the same evening read mostly 115-170):")
    for model in args.models:
        trips = ["%.0f / %.0f" % tuple(c["core_round_trip_ns"][:2])
                 for c in cnn_rounds[model] if len(c.get("core_round_trip_ns", [])) >= 2]
        print("  %s: %s" % (model, ", ".join(trips) or "not measured"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
