#!/usr/bin/python3
"""Each convolution of a preset timed alone, cnn against PyTorch, and the bound that puts on
the whole model's ratio: how fast could cnn train or evaluate the preset against PyTorch if
everything but its convolutions (BatchNorm, ReLU, pooling, the loss, the update, thread waits)
cost nothing?

  /usr/bin/python3 bench/compare_convs.py [--cnn build/release/cnn] [--model resnet]
                                          [--threads 2] [--rounds 3] [--repeat 3]

Needs what bench/compare_torch.py needs (python3-torch, libopenblas0-pthread), whose PyTorch
settings it shares (it imports that script): OpenBLAS's core type and one OpenBLAS thread,
glibc told to keep freed memory, and per figure the better of NCHW and channels_last.

cnn side: for each distinct convolution of the preset (a Residual's body and shortcut
included), a one-convolution spec timed by `cnn bench`'s per-layer rows (forward in training
mode, then backward: weight gradient and, except for the model's first layer, input gradient,
as the model runs it). PyTorch side: the same nn.Conv2d (bias as in the spec), forward with
autograd on, then forward + backward less the forward. Training at batch 64, inference
forwards at batch 256, the whole model's figures as compare_torch.py measures them. Within a
round cnn and PyTorch alternate layer by layer; each figure is the median over the rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_torch as ct  # noqa: E402  (sets up PyTorch's environment before torch loads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

TRAIN_BATCH, INFER_BATCH = 64, 256


def pair(value):
    """A spec's kernel/stride/padding: one number or [h, w]."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def convolutions(layers, shape, found, top_level):
    """Appends (in_shape (c, h, w), conv spec, is_model_input) for every Conv2d of `layers`
    seen with input `shape`, walking Residual bodies and shortcuts; returns the output shape.
    is_model_input: the model's layer 0, whose input gradient the model never computes. Stops
    at the first layer it has no shape rule for (Flatten, Linear: no convolution after)."""
    for index, layer in enumerate(layers):
        kind = layer["type"]
        c, h, w = shape
        if kind == "Conv2d":
            (kh, kw), (sh, sw), (ph, pw) = (pair(layer[k])
                                            for k in ("kernel", "stride", "padding"))
            found.append(((c, h, w), layer, top_level and index == 0))
            shape = (layer["out_channels"], (h + 2 * ph - kh) // sh + 1,
                     (w + 2 * pw - kw) // sw + 1)
        elif kind in ("MaxPool2d", "AvgPool2d"):
            (kh, kw), (ph, pw) = pair(layer["kernel"]), pair(layer.get("padding", 0))
            sh, sw = pair(layer.get("stride", layer["kernel"]))
            shape = (c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        elif kind == "AdaptiveAvgPool2d":
            shape = (c, 1, 1)
        elif kind == "Residual":
            out = convolutions(layer["body"], shape, found, False)
            if layer.get("shortcut"):
                convolutions(layer["shortcut"], shape, found, False)
            shape = out
        elif kind in ("BatchNorm2d", "ReLU", "Tanh", "Sigmoid", "Dropout"):
            pass
        else:
            return shape
    return shape


def describe(in_shape, conv):
    (kh, kw), (sh, _), _ = (pair(conv[k]) for k in ("kernel", "stride", "padding"))
    c, h, w = in_shape
    return "%d -> %d, %dx%d%s, %dx%d in" % (c, conv["out_channels"], kh, kw,
                                            " stride %d" % sh if sh != 1 else "", h, w)


def cnn_layer_ms(cnn, in_shape, conv, model_input, batch, threads, repeat):
    """(forward ms, backward ms, methods) of the convolution alone in `cnn bench`: its layer 0
    when it is the model's first layer (no input gradient), else layer 1 after a ReLU."""
    layers = ([] if model_input else [{"type": "ReLU"}]) + [
        conv, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]
    spec = {"format": "cnn-spec", "input": list(in_shape), "layers": layers}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(spec, f)
        f.flush()
        out = subprocess.run([cnn, "bench", "--model", f.name, "--batch", str(batch), "--threads",
                              str(threads), "--repeat", str(repeat), "--json"],
                             check=True, capture_output=True, text=True)
    row = json.loads(out.stdout)["layers"][0 if model_input else 1]
    return row["forward_ms"], row["backward_ms"], row["algorithm"]


def torch_layer_ms(in_shape, conv, model_input, batch, threads, repeat):
    """(forward ms, backward ms, layout) of the same nn.Conv2d, the better layout by their sum."""
    torch.set_num_threads(threads)
    best = None
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        module = nn.Conv2d(in_shape[0], conv["out_channels"], pair(conv["kernel"]),
                           pair(conv["stride"]), pair(conv["padding"]),
                           bias=conv.get("bias", True)).to(memory_format=layout)
        x = torch.rand(batch, *in_shape).contiguous(memory_format=layout)
        x.requires_grad_(not model_input)
        dy = torch.rand_like(module(x))

        def both():
            module(x).backward(dy)

        forward_ms = 1e3 * batch / ct.rate(lambda: module(x), batch, repeat)
        both_ms = 1e3 * batch / ct.rate(both, batch, repeat)
        figures = (forward_ms, both_ms - forward_ms,
                   "NCHW" if layout == torch.contiguous_format else "channels_last")
        if best is None or figures[0] + figures[1] < best[0] + best[1]:
            best = figures
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn", default=os.path.join(ct.ROOT, "build", "release", "cnn"))
    parser.add_argument("--model", default="resnet", help="preset or spec file (default resnet)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.rounds < 1 or args.repeat < 1 or args.threads < 1:
        parser.error("--threads, --rounds and --repeat must be at least 1")

    info = ct.torch_interop.cnn_info(args.cnn, args.model)
    ct.INFOS[args.model] = info
    spec = info["spec"]
    found = []
    convolutions(spec["layers"], tuple(spec["input"]), found, True)
    if not found:
        sys.exit("compare_convs.py: %s has no Conv2d" % args.model)
    # Distinct convolutions (shape and parameters), with how often the model runs each.
    distinct = {}
    for in_shape, conv, model_input in found:
        key = json.dumps([in_shape, conv, model_input], sort_keys=True)
        distinct.setdefault(key, [in_shape, conv, model_input, 0])[3] += 1
    convs = list(distinct.values())

    rounds = []  # per round: {"cnn": [...], "torch": [...], "model": {...}}
    for _ in range(args.rounds):
        r = {"cnn": [], "torch": []}
        for in_shape, conv, model_input, _count in convs:
            t_train = torch_layer_ms(in_shape, conv, model_input, TRAIN_BATCH, args.threads,
                                     args.repeat)
            t_infer = torch_layer_ms(in_shape, conv, model_input, INFER_BATCH, args.threads,
                                     args.repeat)
            c_train = cnn_layer_ms(args.cnn, in_shape, conv, model_input, TRAIN_BATCH,
                                   args.threads, args.repeat)
            c_infer = cnn_layer_ms(args.cnn, in_shape, conv, model_input, INFER_BATCH,
                                   args.threads, args.repeat)
            r["torch"].append((t_train[0], t_train[1], t_infer[0], t_train[2]))
            r["cnn"].append((c_train[0], c_train[1], c_infer[0], c_train[2]))
        torch_model = ct.best_torch_figures(args.model, args.threads, args.repeat)
        cnn_model = ct.cnn_figures(args.cnn, args.model, args.threads, args.repeat)
        r["model"] = {"torch_train": torch_model["train"], "torch_infer": torch_model["infer"],
                      "cnn_train": cnn_model["train_images_per_s"],
                      "cnn_infer": cnn_model["infer_images_per_s"]}
        rounds.append(r)

    def med(side, i, k):
        return statistics.median(r[side][i][k] for r in rounds)

    print("%s, %d threads, %d rounds (median of each figure over the rounds); ms; training at "
          "batch %d (forward / backward), inference forward at batch %d\n"
          % (args.model, args.threads, args.rounds, TRAIN_BATCH, INFER_BATCH))
    print("| convolution | times | cnn method (fwd/dW/dx) | cnn train | PyTorch train | "
          "cnn infer | PyTorch infer | PyTorch layout |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    sums = {"cnn_train": 0.0, "torch_train": 0.0, "cnn_infer": 0.0, "torch_infer": 0.0}
    for i, (in_shape, conv, model_input, count) in enumerate(convs):
        cf, cb, ci = med("cnn", i, 0), med("cnn", i, 1), med("cnn", i, 2)
        tf, tb, ti = med("torch", i, 0), med("torch", i, 1), med("torch", i, 2)
        sums["cnn_train"] += count * (cf + cb)
        sums["torch_train"] += count * (tf + tb)
        sums["cnn_infer"] += count * ci
        sums["torch_infer"] += count * ti
        print("| %s%s | %d | %s | %.3f / %.3f | %.3f / %.3f | %.3f | %.3f | %s |"
              % (describe(in_shape, conv), " (model input: no dx)" if model_input else "", count,
                 rounds[-1]["cnn"][i][3], cf, cb, tf, tb, ci, ti, rounds[-1]["torch"][i][3]))
    print("| sum over the model's convolutions | | | %.2f | %.2f | %.2f | %.2f | |"
          % (sums["cnn_train"], sums["torch_train"], sums["cnn_infer"], sums["torch_infer"]))

    model = {k: statistics.median(r["model"][k] for r in rounds) for k in rounds[0]["model"]}
    torch_step = 1e3 * TRAIN_BATCH / model["torch_train"]
    cnn_step = 1e3 * TRAIN_BATCH / model["cnn_train"]
    torch_batch = 1e3 * INFER_BATCH / model["torch_infer"]
    cnn_batch = 1e3 * INFER_BATCH / model["cnn_infer"]
    print("\n| | PyTorch | cnn | cnn / PyTorch |")
    print("| --- | ---: | ---: | ---: |")
    print("| training step, batch %d, ms | %.2f | %.2f | %.2fx |"
          % (TRAIN_BATCH, torch_step, cnn_step, torch_step / cnn_step))
    print("| of which convolutions (sum above) | %.2f | %.2f | |"
          % (sums["torch_train"], sums["cnn_train"]))
    print("| the rest of the step | %.2f | %.2f | |"
          % (torch_step - sums["torch_train"], cnn_step - sums["cnn_train"]))
    print("| inference, batch %d, ms | %.2f | %.2f | %.2fx |"
          % (INFER_BATCH, torch_batch, cnn_batch, torch_batch / cnn_batch))
    print("| of which convolutions (sum above) | %.2f | %.2f | |"
          % (sums["torch_infer"], sums["cnn_infer"]))
    print("\nBound with the rest at zero cost (PyTorch's time / cnn's convolutions): training "
          "%.2fx, inference %.2fx PyTorch; a 2x target needs cnn's convolutions under %.2f ms "
          "(training) and %.2f ms (inference)."
          % (torch_step / sums["cnn_train"], torch_batch / sums["cnn_infer"], torch_step / 2,
             torch_batch / 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
