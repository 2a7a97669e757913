#!/usr/bin/python3
"""Writes the PyTorch golden files under tests/golden/ (safetensors, float32).

Run with Debian's python3-torch:  /usr/bin/python3 tools/make_golden.py [--only FILE]
(--only resnet.safetensors: write that file alone, e.g. after a preset changed.)
Fixed seeds make the output reproducible. The C++ tests (tests/test_golden.cpp) read the
files; CI does not need torch because the files are committed.

Files:
  layers.safetensors  one case per layer configuration: "<case>.x", ".y", ".dy" (the upstream
                      gradient; the loss is sum(y * dy)), ".dx", and for layers with
                      parameters ".weight", ".bias", ".dweight", ".dbias". The metadata key
                      "cases" holds a JSON list of {"name", "layer", hyper-parameters}.
  losses.safetensors  "<case>.prediction", ".target", ".loss" (shape (1,)), ".dprediction";
                      metadata "cases" as above.
  sgd.safetensors     SGD variants on one tensor: "<case>.p0", ".grads" (steps x n), ".p"
                      (steps x n, the parameter after each step); metadata "cases".
  adam.safetensors    Adam and AdamW variants, as sgd.safetensors.
  average_pooling.safetensors  AvgPool2d and AdaptiveAvgPool2d(1) cases, as layers.safetensors.
  activations.safetensors  LeakyReLU and ReLU6 cases, as layers.safetensors, exact kinks
                      included (these take PyTorch's derivatives there).
  label_smoothing.safetensors  cross-entropy with label smoothing, as losses.safetensors;
                      each case's metadata has its "label_smoothing".
  schedules.safetensors  "<case>.lr" (steps,): PyTorch's learning rate at every step of each
                      schedule (LambdaLR, StepLR, CosineAnnealingLR, OneCycleLR, each optionally
                      after a LinearLR warm-up through SequentialLR), stored F32 (written from
                      float64); metadata "cases".
  lenet5.safetensors  five SGD steps of LeNet-5 on a fixed batch: "x", "labels", "init.<name>"
                      (the initial state_dict), "losses" (5,), "final.<name>"; metadata
                      "optimizer" (JSON).
"""
import copy
import json
import os
import struct
import sys

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")


def write_safetensors_file(path, tensors, metadata):
    """tensors: list of (name, tensor); written as F32 (I64 for int64, F64 for float64 tensors)."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.int64:
            dtype, data = "I64", t.numpy().astype("<i8").tobytes()
        elif t.dtype == torch.float64:
            dtype, data = "F64", t.numpy().astype("<f8").tobytes()
        else:
            dtype, data = "F32", t.to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def no_zeros(t):
    # The seed's ReLU derivative at exactly 0 is 1, PyTorch's is 0: keep exact zeros out.
    return torch.where(t == 0, torch.full_like(t, 1e-3), t)


def record_module_case(cases, tensors, name, module, x, meta):
    """One golden case of `module` on input x: x, y, a random upstream dy, dx, and each parameter
    with its gradient, as NAME.x, NAME.y, NAME.dy, NAME.dx, NAME.weight, NAME.dweight..."""
    x = x.clone().requires_grad_(True)
    y = module(x)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    tensors.extend([(name + ".x", x), (name + ".y", y), (name + ".dy", dy), (name + ".dx", x.grad)])
    for pname, param in module.named_parameters():
        tensors.append((name + "." + pname, param))
        tensors.append((name + ".d" + pname, param.grad))
    cases.append(dict(name=name, **meta))


def layer_cases():
    conv = [
        dict(name="conv_k3", n=2, c=3, h=7, w=6, oc=4, k=[3, 3], s=[1, 1], p=[0, 0], bias=True),
        dict(name="conv_k3_s2_p1", n=2, c=3, h=8, w=9, oc=5, k=[3, 3], s=[2, 2], p=[1, 1], bias=True),
        dict(name="conv_k5_p2", n=1, c=2, h=9, w=9, oc=3, k=[5, 5], s=[1, 1], p=[2, 2], bias=True),
        dict(name="conv_k2x3_s2x1_p1x0", n=3, c=2, h=7, w=8, oc=3, k=[2, 3], s=[2, 1], p=[1, 0], bias=True),
        dict(name="conv_k1", n=2, c=5, h=4, w=5, oc=3, k=[1, 1], s=[1, 1], p=[0, 0], bias=True),
        dict(name="conv_k3_s3_p2_nobias", n=2, c=4, h=10, w=11, oc=2, k=[3, 3], s=[3, 3], p=[2, 2], bias=False),
        dict(name="conv_k4_s2_p1", n=1, c=8, h=10, w=10, oc=6, k=[4, 4], s=[2, 2], p=[1, 1], bias=True),
    ]
    pool = [
        dict(name="pool_k2", n=2, c=3, h=8, w=6, k=[2, 2], s=[2, 2], p=[0, 0]),
        dict(name="pool_k3_s2_p1", n=2, c=2, h=9, w=8, k=[3, 3], s=[2, 2], p=[1, 1]),
        dict(name="pool_k2x3_s1x2", n=1, c=4, h=5, w=9, k=[2, 3], s=[1, 2], p=[0, 0]),
        dict(name="pool_k3_s1", n=3, c=1, h=6, w=7, k=[3, 3], s=[1, 1], p=[0, 0]),
        dict(name="pool_k2_odd", n=1, c=2, h=7, w=7, k=[2, 2], s=[2, 2], p=[0, 0]),
    ]
    cases, tensors = [], []

    def run(name, module, x, meta):
        record_module_case(cases, tensors, name, module, x, meta)

    for c in conv:
        m = nn.Conv2d(c["c"], c["oc"], c["k"], stride=c["s"], padding=c["p"], bias=c["bias"])
        run(c["name"], m, torch.randn(c["n"], c["c"], c["h"], c["w"]),
            dict(layer="Conv2d", in_channels=c["c"], out_channels=c["oc"], kernel=c["k"],
                 stride=c["s"], padding=c["p"], bias=c["bias"]))
    m = nn.Conv2d(3, 4, 5, padding="same")
    run("conv_k5_same", m, torch.randn(2, 3, 6, 7),
        dict(layer="Conv2d", in_channels=3, out_channels=4, kernel=[5, 5], stride=[1, 1],
             padding="same", bias=True))
    for c in pool:
        m = nn.MaxPool2d(c["k"], stride=c["s"], padding=c["p"])
        run(c["name"], m, torch.randn(c["n"], c["c"], c["h"], c["w"]),
            dict(layer="MaxPool2d", kernel=c["k"], stride=c["s"], padding=c["p"]))
    run("relu", nn.ReLU(), no_zeros(torch.randn(3, 4, 5, 2)), dict(layer="ReLU"))
    run("tanh", nn.Tanh(), 2 * torch.randn(3, 7), dict(layer="Tanh"))
    run("sigmoid", nn.Sigmoid(), 3 * torch.randn(2, 3, 4, 4), dict(layer="Sigmoid"))
    run("softmax_2d", nn.Softmax(dim=1), 2 * torch.randn(4, 10), dict(layer="Softmax"))
    run("softmax_4d", nn.Softmax(dim=1), torch.randn(2, 5, 3, 3), dict(layer="Softmax"))
    run("linear", nn.Linear(12, 7), torch.randn(5, 12),
        dict(layer="Linear", in_features=12, out_features=7, bias=True))
    run("linear_nobias", nn.Linear(9, 4, bias=False), torch.randn(3, 9),
        dict(layer="Linear", in_features=9, out_features=4, bias=False))
    run("flatten", nn.Flatten(), torch.randn(3, 2, 4, 5), dict(layer="Flatten"))
    return cases, tensors


def activation_cases():
    """LeakyReLU and ReLU6, with exact zeros (and ReLU6's 6) planted: unlike the seed's ReLU these
    layers take PyTorch's derivative at their kinks (LeakyReLU: the slope at 0; ReLU6: 0 at 0 and
    at 6), so the golden gradients hold them to it there too. Its own seed: the cases do not
    depend on the draws of the files written before (added after them)."""
    torch.manual_seed(20261207)
    cases, tensors = [], []

    def run(name, module, x, meta):
        record_module_case(cases, tensors, name, module, x, meta)

    def planted(x, values):
        flat = x.flatten()
        for k, v in enumerate(values):
            flat[3 * k] = v
        return flat.reshape(x.shape)

    run("leaky_relu_default", nn.LeakyReLU(), planted(torch.randn(3, 4, 5, 2), [0.0, 0.0]),
        dict(layer="LeakyReLU"))
    run("leaky_relu_0.2", nn.LeakyReLU(0.2), planted(torch.randn(2, 3, 4, 4), [0.0]),
        dict(layer="LeakyReLU", negative_slope=0.2))
    run("leaky_relu_negative", nn.LeakyReLU(-1.5), 2 * torch.randn(3, 7),
        dict(layer="LeakyReLU", negative_slope=-1.5))
    run("relu6", nn.ReLU6(), planted(4 * torch.randn(3, 4, 5, 2), [0.0, 6.0, 0.0, 6.0]),
        dict(layer="ReLU6"))
    run("leaky_relu_1", nn.LeakyReLU(1.0), torch.randn(2, 9), dict(layer="LeakyReLU", negative_slope=1.0))
    run("leaky_relu_5", nn.LeakyReLU(5.0), planted(torch.randn(1, 2, 3, 7), [0.0]),
        dict(layer="LeakyReLU", negative_slope=5.0))
    run("relu6_2d", nn.ReLU6(), planted(3 + 4 * torch.randn(4, 9), [6.0, 0.0]), dict(layer="ReLU6"))
    run("relu6_small", nn.ReLU6(), torch.randn(2, 3, 5, 5), dict(layer="ReLU6"))
    return cases, tensors


def loss_cases():
    cases, tensors = [], []

    def run(name, loss_fn, prediction, target, meta):
        p = prediction.clone().requires_grad_(True)
        loss = loss_fn(p, target)
        loss.backward()
        tensors.extend([(name + ".prediction", p), (name + ".target", target),
                        (name + ".loss", loss.reshape(1)), (name + ".dprediction", p.grad)])
        cases.append(dict(name=name, **meta))

    bce = nn.BCELoss()
    run("log_loss_hard", bce, torch.sigmoid(torch.randn(8, 1)), torch.randint(0, 2, (8, 1)).float(),
        dict(loss="LogLoss"))
    run("log_loss_soft", bce, torch.sigmoid(2 * torch.randn(4, 3, 2, 2)), torch.rand(4, 3, 2, 2),
        dict(loss="LogLoss"))
    ce = nn.CrossEntropyLoss()
    run("cross_entropy", ce, 3 * torch.randn(6, 10), torch.randint(0, 10, (6,)),
        dict(loss="CrossEntropyLoss"))
    run("cross_entropy_large_logits", ce, 40 * torch.randn(5, 4), torch.randint(0, 4, (5,)),
        dict(loss="CrossEntropyLoss"))
    run("cross_entropy_soft", ce, torch.randn(4, 5), torch.softmax(torch.randn(4, 5), dim=1),
        dict(loss="CrossEntropyLoss"))
    run("mse", nn.MSELoss(), torch.randn(3, 4, 2), torch.randn(3, 4, 2), dict(loss="MseLoss"))
    return cases, tensors


def sgd_cases():
    configs = [
        dict(name="plain", lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
        dict(name="momentum", lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
        dict(name="momentum_dampening_decay", lr=0.05, momentum=0.8, dampening=0.3,
             weight_decay=0.01, nesterov=False),
        dict(name="nesterov_decay", lr=0.02, momentum=0.9, dampening=0.0, weight_decay=0.001,
             nesterov=True),
    ]
    cases, tensors = [], []
    steps, n = 5, 17
    for c in configs:
        p = torch.randn(n, requires_grad=True)
        opt = torch.optim.SGD([p], lr=c["lr"], momentum=c["momentum"], dampening=c["dampening"],
                              weight_decay=c["weight_decay"], nesterov=c["nesterov"])
        tensors.extend(optimizer_steps(c["name"], p, opt, torch.randn(steps, n)))
        cases.append(c)
    return cases, tensors


def optimizer_steps(name, p, opt, grads):
    """One row of grads per opt.step() on p: "<name>.p0", ".grads", ".p" (after each step)."""
    p0, after = p.detach().clone(), []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        after.append(p.detach().clone())
    return [(name + ".p0", p0), (name + ".grads", grads), (name + ".p", torch.stack(after))]


def adam_cases():
    """Adam and AdamW over 6 steps on one tensor, as sgd_cases."""
    configs = [
        dict(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False),
        dict(name="adam_decay", lr=0.003, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05,
             decoupled=False),
        dict(name="adamw", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True),
        dict(name="adamw_strong_decay", lr=0.02, beta1=0.5, beta2=0.9, eps=1e-4, weight_decay=0.5,
             decoupled=True),
    ]
    cases, tensors = [], []
    steps, n = 6, 19
    for c in configs:
        p = torch.randn(n, requires_grad=True)
        kind = torch.optim.AdamW if c["decoupled"] else torch.optim.Adam
        opt = kind([p], lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                   weight_decay=c["weight_decay"])
        # Gradients of mixed sizes, some tiny, so that eps and the bias corrections matter.
        grads = torch.randn(steps, n) * torch.logspace(-4, 1, n)
        tensors.extend(optimizer_steps(c["name"], p, opt, grads))
        cases.append(c)
    return cases, tensors


def schedule_cases():
    """The learning rate of every step of each schedule (include/cnn/schedule.hpp), as PyTorch's
    schedulers give it when stepped once per optimizer step."""
    from torch.optim import lr_scheduler as S
    configs = [
        dict(name="constant", kind="constant", lr=0.05, total=12, warmup=0),
        dict(name="constant_warmup", kind="constant", lr=0.05, total=12, warmup=4),
        dict(name="step", kind="step", lr=0.1, total=20, warmup=0, step_size=6, gamma=0.1),
        dict(name="step_warmup", kind="step", lr=0.1, total=20, warmup=3, step_size=5, gamma=0.5),
        dict(name="cosine", kind="cosine", lr=0.05, total=25, warmup=0),
        dict(name="cosine_warmup", kind="cosine", lr=0.2, total=30, warmup=5),
        dict(name="onecycle", kind="onecycle", lr=0.1, total=40, warmup=0, pct_start=0.3),
        dict(name="onecycle_rise", kind="onecycle", lr=0.4, total=37, warmup=9),
    ]
    warmup_start = 0.01
    cases, tensors = [], []
    for c in configs:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=c["lr"])
        total, warmup = c["total"], c["warmup"]
        if c["kind"] == "onecycle":
            pct = warmup / total if warmup else c["pct_start"]
            sched = S.OneCycleLR(opt, max_lr=c["lr"], total_steps=total, pct_start=pct,
                                 anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4,
                                 cycle_momentum=False)
        else:
            if c["kind"] == "constant":
                main = S.LambdaLR(opt, lambda t: 1.0)
            elif c["kind"] == "step":
                main = S.StepLR(opt, step_size=c["step_size"], gamma=c["gamma"])
            else:
                main = S.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=0.0)
            if warmup:
                warm = S.LinearLR(opt, start_factor=warmup_start, end_factor=1.0, total_iters=warmup)
                sched = S.SequentialLR(opt, [warm, main], milestones=[warmup])
            else:
                sched = main
        rates = []
        for _ in range(total):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        c = dict(c, warmup_start=warmup_start)
        tensors.append((c["name"] + ".lr", torch.tensor(rates, dtype=torch.float64)))
        cases.append(c)
    return cases, tensors


def smoothing_cases():
    """Cross-entropy with label smoothing (nn.CrossEntropyLoss(label_smoothing=e)), with class
    indices and with probabilities as targets, as loss_cases."""
    cases, tensors = [], []
    for name, e, logits, target in [
            ("smoothing_0.1", 0.1, 3 * torch.randn(7, 10), torch.randint(0, 10, (7,))),
            ("smoothing_0.3_large_logits", 0.3, 30 * torch.randn(4, 5), torch.randint(0, 5, (4,))),
            ("smoothing_0.2_soft", 0.2, torch.randn(3, 6), torch.softmax(torch.randn(3, 6), dim=1)),
            ("smoothing_0.05_two_classes", 0.05, torch.randn(5, 2), torch.randint(0, 2, (5,)))]:
        p = logits.clone().requires_grad_(True)
        loss = nn.CrossEntropyLoss(label_smoothing=e)(p, target)
        loss.backward()
        tensors.extend([(name + ".prediction", p), (name + ".target", target),
                        (name + ".loss", loss.reshape(1)), (name + ".dprediction", p.grad)])
        cases.append(dict(name=name, loss="CrossEntropyLoss", label_smoothing=e))
    return cases, tensors


def average_pooling_cases():
    """AvgPool2d and AdaptiveAvgPool2d(1), in layers.safetensors' format."""
    cases, tensors = [], []
    configs = [
        dict(name="avgpool_k2", n=2, c=3, h=8, w=6, k=[2, 2], s=[2, 2], p=[0, 0], cip=True),
        dict(name="avgpool_k3_s2_p1", n=2, c=2, h=9, w=8, k=[3, 3], s=[2, 2], p=[1, 1], cip=True),
        dict(name="avgpool_k3_s2_p1_exclude_pad", n=2, c=2, h=9, w=8, k=[3, 3], s=[2, 2], p=[1, 1],
             cip=False),
        dict(name="avgpool_k2x3_s1x2_p1x1", n=1, c=4, h=5, w=9, k=[2, 3], s=[1, 2], p=[1, 1],
             cip=False),
        dict(name="avgpool_k5_s3_p2", n=3, c=1, h=11, w=7, k=[5, 5], s=[3, 3], p=[2, 2], cip=True),
    ]
    for c in configs:
        x = torch.randn(c["n"], c["c"], c["h"], c["w"], requires_grad=True)
        y = nn.AvgPool2d(c["k"], stride=c["s"], padding=c["p"], count_include_pad=c["cip"])(x)
        dy = torch.randn_like(y)
        (y * dy).sum().backward()
        tensors.extend([(c["name"] + ".x", x), (c["name"] + ".y", y), (c["name"] + ".dy", dy),
                        (c["name"] + ".dx", x.grad)])
        cases.append(dict(name=c["name"], layer="AvgPool2d", kernel=c["k"], stride=c["s"],
                          padding=c["p"], count_include_pad=c["cip"]))
    for name, shape in [("global_avgpool", (2, 5, 7, 6)), ("global_avgpool_1x1", (3, 4, 1, 1))]:
        x = torch.randn(*shape, requires_grad=True)
        y = nn.AdaptiveAvgPool2d(1)(x)
        dy = torch.randn_like(y)
        (y * dy).sum().backward()
        tensors.extend([(name + ".x", x), (name + ".y", y), (name + ".dy", dy), (name + ".dx", x.grad)])
        cases.append(dict(name=name, layer="AdaptiveAvgPool2d", output_size=1))
    return cases, tensors


def normalization_cases():
    """BatchNorm2d / BatchNorm1d and Residual blocks: three training-mode calls (x<k>, y<k>,
    dy<k>, dx<k>, d<param><k>, gradients zeroed before each), the buffers after them, then one
    evaluation-mode call (suffix "eval"), with the running statistics."""
    from torch_interop import Residual
    cases, tensors = [], []

    def conv_bn(cin, cout, k, stride, relu):
        layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]
        spec = [dict(type="Conv2d", out_channels=cout, kernel=k, stride=stride, padding=k // 2, bias=False),
                dict(type="BatchNorm2d")]
        if relu:
            layers.append(nn.ReLU())
            spec.append(dict(type="ReLU"))
        return layers, spec

    def run(name, module, shape, meta):
        # Random affine parameters, so that weight and bias are not 1 and 0.
        with torch.no_grad():
            for pname, param in module.named_parameters():
                param.copy_(torch.randn_like(param) * 0.5 + (1.0 if pname.endswith("weight") and param.dim() == 1 else 0.0))
        tensors.extend([(name + "." + k, v.clone()) for k, v in module.named_parameters()])
        for suffix in ["0", "1", "2", "eval"]:
            module.train(suffix != "eval")
            module.zero_grad()
            x = no_zeros(torch.randn(*shape) * 2 + 0.5).requires_grad_(True)
            y = module(x)
            dy = torch.randn_like(y)
            (y * dy).sum().backward()
            tensors.extend([(name + ".x" + suffix, x), (name + ".y" + suffix, y),
                            (name + ".dy" + suffix, dy), (name + ".dx" + suffix, x.grad)])
            for pname, param in module.named_parameters():
                tensors.append((name + ".d" + pname + suffix, param.grad.clone()))
            if suffix == "2":
                tensors.extend([(name + "." + k, v.clone()) for k, v in module.named_buffers()])
        cases.append(dict(name=name, **meta))

    run("batchnorm2d", nn.BatchNorm2d(3), (4, 3, 5, 6), dict(layer="BatchNorm2d"))
    run("batchnorm2d_eps_momentum", nn.BatchNorm2d(5, eps=1e-3, momentum=0.3), (2, 5, 3, 7),
        dict(layer="BatchNorm2d", eps=1e-3, momentum=0.3))
    run("batchnorm2d_no_affine", nn.BatchNorm2d(2, affine=False), (3, 2, 4, 4),
        dict(layer="BatchNorm2d", affine=False))
    run("batchnorm1d", nn.BatchNorm1d(7), (6, 7), dict(layer="BatchNorm1d"))
    run("batchnorm1d_3d", nn.BatchNorm1d(4, momentum=0.5), (3, 4, 5), dict(layer="BatchNorm1d", momentum=0.5))
    body, body_spec = conv_bn(3, 3, 3, 1, True)
    body2, body2_spec = conv_bn(3, 3, 3, 1, False)
    run("residual_identity", Residual(nn.Sequential(*body, *body2), nn.Sequential(), "ReLU"), (2, 3, 6, 5),
        dict(layer="Residual", body=body_spec + body2_spec, activation="ReLU"))
    body, body_spec = conv_bn(2, 4, 3, 2, True)
    body2, body2_spec = conv_bn(4, 4, 3, 1, False)
    short, short_spec = conv_bn(2, 4, 1, 2, False)
    run("residual_projection", Residual(nn.Sequential(*body, *body2), nn.Sequential(*short), "ReLU"),
        (3, 2, 7, 8), dict(layer="Residual", body=body_spec + body2_spec, shortcut=short_spec,
                           activation="ReLU"))
    inner_body, inner_spec = conv_bn(3, 3, 3, 1, True)
    inner = Residual(nn.Sequential(*inner_body), nn.Sequential(), None)
    # No bias before a BatchNorm in training: its gradient is zero but for rounding noise.
    outer = Residual(nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3), inner),
                     nn.Sequential(nn.Conv2d(2, 3, 1)), "Tanh")
    run("residual_nested", outer, (2, 2, 5, 5),
        dict(layer="Residual", activation="Tanh",
             body=[dict(type="Conv2d", out_channels=3, kernel=1, bias=False), dict(type="BatchNorm2d"),
                   dict(type="Residual", body=inner_spec, activation="none")],
             shortcut=[dict(type="Conv2d", out_channels=3, kernel=1)]))
    return cases, tensors


def resnet():
    """Five SGD training steps of the resnet preset (built from `cnn info resnet --json`), with
    label smoothing, from one initial state: in float64 (the answer: the loss per step, the final
    state_dict and the evaluation logits, stored as F64) and in float32 (PyTorch's rounding).

    The final float32 state of five steps through nine BatchNorms is ill-conditioned: PyTorch's
    own float32 run ends 5e-7 from the float64 one on this input, but 4e-3 (BatchNorm biases)
    after moving each pixel of the input by one ulp, while the float64 runs of the two inputs
    agree to 1e-7. So "torch32_error.<tensor>" holds, per tensor, the largest relative error of
    PyTorch's float32 run from float64 over the input and three one-ulp perturbations of it: the
    error that float32 rounding brings, which a float implementation is held to."""
    import torch_interop
    model = torch_interop.torch_model(torch_interop.cnn_info(torch_interop.DEFAULT_CNN, "resnet"))
    optimizer = dict(lr=0.01, momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False)
    x = torch.rand(32, 1, 28, 28)
    labels = torch.randint(0, 10, (32,))
    tensors = [("x", x), ("labels", labels)]
    tensors += [("init." + k, v.clone()) for k, v in model.state_dict().items()]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def train(dtype, inputs):
        m = copy.deepcopy(model).to(dtype)
        opt = torch.optim.SGD(m.parameters(), **optimizer)
        losses = []
        m.train()
        for _ in range(5):
            opt.zero_grad()
            loss = loss_fn(m(inputs.to(dtype)), labels)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        m.eval()
        with torch.no_grad():
            logits = m(inputs.to(dtype))
        return m.state_dict(), losses, logits

    state, losses, logits = train(torch.float64, x)
    tensors.append(("losses", torch.tensor(losses, dtype=torch.float64)))
    tensors += [("final." + k, v.clone()) for k, v in state.items()]
    tensors.append(("eval_logits", logits))
    errors = {}
    perturb = torch.Generator().manual_seed(7)
    for trial in range(4):
        inputs = x
        if trial > 0:  # each pixel one ulp up or down
            up = torch.rand(x.shape, generator=perturb) < 0.5
            inputs = torch.where(up, torch.nextafter(x, torch.full_like(x, 2.0)),
                                 torch.nextafter(x, torch.zeros_like(x)))
        truth = train(torch.float64, inputs) if trial > 0 else (state, losses, logits)
        ours = train(torch.float32, inputs)
        pairs = [(k, ours[0][k], truth[0][k]) for k in truth[0] if truth[0][k].dtype.is_floating_point]
        pairs.append(("eval_logits", ours[2], truth[2]))
        for k, a, b in pairs:
            e = ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
            errors[k] = max(errors.get(k, 0.0), e)
    tensors += [("torch32_error." + k, torch.tensor([e], dtype=torch.float64)) for k, e in errors.items()]
    return tensors, dict(optimizer=json.dumps(optimizer), steps="5", label_smoothing="0.1")


def lenet5():
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    optimizer = dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=False)
    x = torch.rand(16, 1, 28, 28)
    labels = torch.randint(0, 10, (16,))
    tensors = [("x", x), ("labels", labels)]
    tensors += [("init." + k, v.clone()) for k, v in model.state_dict().items()]
    opt = torch.optim.SGD(model.parameters(), **optimizer)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tensors.append(("losses", torch.tensor(losses)))
    tensors += [("final." + k, v.clone()) for k, v in model.state_dict().items()]
    return tensors, dict(optimizer=json.dumps(optimizer), steps="5")


def main():
    # --only NAME.safetensors: every case is still drawn, in order (each file's random inputs
    # depend on the draws before it), but only that file is written; the others keep the bits
    # they were committed with (a newer torch or BLAS moves their last digits).
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    torch.manual_seed(20261127)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)

    def write_safetensors(path, tensors, meta):
        if only is None or os.path.basename(path) == only:
            write_safetensors_file(path, tensors, meta)
    cases, tensors = layer_cases()
    write_safetensors(os.path.join(OUT, "layers.safetensors"), tensors, {"cases": json.dumps(cases)})
    cases, tensors = loss_cases()
    write_safetensors(os.path.join(OUT, "losses.safetensors"), tensors, {"cases": json.dumps(cases)})
    cases, tensors = sgd_cases()
    write_safetensors(os.path.join(OUT, "sgd.safetensors"), tensors, {"cases": json.dumps(cases)})
    tensors, meta = lenet5()
    write_safetensors(os.path.join(OUT, "lenet5.safetensors"), tensors, meta)
    # After the files above, so that their random draws stay as they were.
    cases, tensors = adam_cases()
    write_safetensors(os.path.join(OUT, "adam.safetensors"), tensors, {"cases": json.dumps(cases)})
    cases, tensors = schedule_cases()
    write_safetensors(os.path.join(OUT, "schedules.safetensors"), tensors,
                      {"cases": json.dumps(cases)})
    cases, tensors = smoothing_cases()
    write_safetensors(os.path.join(OUT, "label_smoothing.safetensors"), tensors,
                      {"cases": json.dumps(cases)})
    cases, tensors = average_pooling_cases()
    write_safetensors(os.path.join(OUT, "average_pooling.safetensors"), tensors,
                      {"cases": json.dumps(cases)})
    cases, tensors = normalization_cases()
    write_safetensors(os.path.join(OUT, "normalization.safetensors"), tensors,
                      {"cases": json.dumps(cases)})
    tensors, meta = resnet()
    write_safetensors(os.path.join(OUT, "resnet.safetensors"), tensors, meta)
    cases, tensors = activation_cases()
    write_safetensors(os.path.join(OUT, "activations.safetensors"), tensors,
                      {"cases": json.dumps(cases)})
    print("wrote golden files to", os.path.normpath(OUT), "with torch", torch.__version__, file=sys.stderr)


if __name__ == "__main__":
    main()
