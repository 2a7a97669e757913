#!/usr/bin/python3
"""PyTorch interop for cnn model files, both ways (Debian's python3-torch, /usr/bin/python3).

  tools/torch_interop.py export [lenet5] [resnet] [avgpool] [idioms] [activations]
      Trains each preset in PyTorch on the bundled Fashion-MNIST sample (LeNet-5 one epoch of
      SGD; resnet three, its BatchNorms in training mode so the running statistics are real)
      and writes, under tests/golden/, for P in lenet5, resnet:
        torch_P.safetensors             its state_dict with cnn's metadata (format_version,
                                        architecture), as any PyTorch user can write it
                                        (num_batches_tracked as I64, as PyTorch stores it);
        torch_P_plain.safetensors       the bare state_dict, no metadata (cnn eval reads it
                                        with --model P);
        torch_P_outputs.safetensors     "logits" (1000, 10) of the sample's test images in
                                        evaluation mode, "loss" and "accuracy" as PyTorch
                                        computes them;
        torch_P.onnx                    the model as torch.onnx.export writes it (lenet5 at
                                        opset 11, resnet at opset 17; dynamic batch), and
        torch_resnet_bn.onnx            resnet at opset 13 with its BatchNormalization nodes
                                        kept (TrainingMode.PRESERVE) rather than folded.
      avgpool, a small network with padded AvgPool2d layers (one epoch of SGD), gives only
      torch_avgpool.onnx (opset 13: each padded AvgPool2d is a Pad and an AveragePool) and
      torch_avgpool_outputs.safetensors. idioms, a network written in PyTorch's own idioms
      (class Idioms: ceil_mode, x + y, x.mean((2, 3))), gives torch_idioms.onnx (opset 13) and
      torch_idioms_outputs.safetensors. activations (class Activations: nn.LeakyReLU(0.2),
      nn.LeakyReLU(), nn.ReLU6) gives torch_activations.onnx (opset 13) and
      torch_activations_outputs.safetensors.
      tests/test_interop.cpp checks that cnn gives the same logits; CI needs no torch.

  tools/torch_interop.py check MODEL [--data DIR] [--cnn PATH]
      Loads a model written by `cnn train` into the equivalent torch.nn.Sequential with
      load_state_dict(strict=True), runs the test set of DIR through it, runs
      `cnn eval MODEL --json --logits` on the same data, and prints both accuracies and the
      largest logit difference. Exit status 1 when they differ by more than 1e-5 relative.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SAMPLE = os.path.join(ROOT, "data", "fashion-mnist-sample")
GOLDEN = os.path.join(ROOT, "tests", "golden")

DEFAULT_CNN = os.path.join(ROOT, "build", "release", "cnn")


def cnn_info(cnn, model):
    """`cnn info MODEL --json` of a preset, spec file or model file: its canonical spec and, per
    layer, the equivalent torch.nn module. The C++ spec registry is the one definition of every
    preset and of every layer type's mapping."""
    result = subprocess.run([cnn, "info", model, "--json"], check=True, capture_output=True,
                            text=True)
    return json.loads(result.stdout)


def read_idx(path):
    """uint8 array of an IDX file, raw or gzipped."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    data = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_split(directory, split):
    images = read_idx(os.path.join(directory, split + "-images-idx3-ubyte"))
    labels = read_idx(os.path.join(directory, split + "-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def size2(v):
    return tuple(v) if isinstance(v, list) else (v, v)


class Residual(nn.Module):
    """cnn's Residual: activation(body(x) + shortcut(x)); the shortcut is the identity when it
    has no layers. Its state_dict names are cnn's: body.0.weight, shortcut.1.running_mean."""

    def __init__(self, body, shortcut, activation):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if len(shortcut) else None
        self.activation = {None: None, "ReLU": torch.relu, "Tanh": torch.tanh,
                           "Sigmoid": torch.sigmoid}[activation]

    def forward(self, x):
        y = self.body(x) + (x if self.shortcut is None else self.shortcut(x))
        return y if self.activation is None else self.activation(y)


def torch_module(t):
    """One module of a `cnn info --json` layer's "torch" description."""
    def value(v):
        return tuple(v) if isinstance(v, list) else v
    if t["module"] == "Residual":
        return Residual(nn.Sequential(*[torch_module(m) for m in t["body"]]),
                        nn.Sequential(*[torch_module(m) for m in t["shortcut"]]), t["activation"])
    return getattr(nn, t["module"])(*[value(a) for a in t["args"]],
                                    **{k: value(v) for k, v in t["kwargs"].items()})


def torch_model(info):
    """The torch.nn.Sequential that `cnn info --json` describes, one module per layer."""
    return nn.Sequential(*[torch_module(layer["torch"]) for layer in info["layers"]])


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors:
        if t.dtype == torch.int64:  # num_batches_tracked, as PyTorch stores it
            data, dtype = t.detach().contiguous().numpy().astype("<i8").tobytes(), "I64"
        else:
            data, dtype = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes(), "F32"
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    data = open(path, "rb").read()
    n, = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        assert e["dtype"] in ("F32", "I64"), name
        b, end = e["data_offsets"]
        tensors[name] = torch.from_numpy(
            np.frombuffer(data[8 + n + b:8 + n + end], dtype="<f4" if e["dtype"] == "F32" else "<i8")
            .copy().reshape(e["shape"]))
    return tensors, metadata


CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]


def train_on_sample(model, opt, epochs):
    """`epochs` of the sample's training images in batches of 64, shuffled by torch's seed;
    leaves `model` in evaluation mode."""
    x, y = load_split(SAMPLE, "train")
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for first in range(0, len(x), 64):
            batch = order[first:first + 64]
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()


def write_outputs(model, file_name):
    """Writes GOLDEN/file_name: `model`'s logits, loss and accuracy on the sample's test images.
    Returns the images, the loss and the accuracy."""
    tx, ty = load_split(SAMPLE, "t10k")
    with torch.no_grad():
        logits = model(tx)
        loss = nn.CrossEntropyLoss()(logits, ty)
        accuracy = (logits.argmax(1) == ty).float().mean()
    write_safetensors(os.path.join(GOLDEN, file_name),
                      [("logits", logits), ("loss", loss.reshape(1)), ("accuracy", accuracy.reshape(1))])
    return tx, loss, accuracy


def export_trained(cnn, preset, optimizer, epochs, onnx_opset, name=None, state_dicts=True):
    """Trains `preset` (a preset or a spec file; files are named after `name`, default the
    preset) in PyTorch on the sample's training images (training-mode BatchNorm, so
    its running statistics are real ones) and writes torch_PRESET.safetensors (the state_dict
    with cnn's metadata), torch_PRESET_plain.safetensors (bare) and
    torch_PRESET_outputs.safetensors (PyTorch's evaluation-mode logits, loss and accuracy on
    the sample's test images)."""
    torch.manual_seed(1127)
    torch.set_num_threads(1)
    info = cnn_info(cnn, preset)
    preset = name or preset
    spec = dict(info["spec"], name="torch_" + preset)
    model = torch_model(info)
    train_on_sample(model, optimizer(model.parameters()), epochs)
    state = list(model.state_dict().items())
    metadata = {"format": "cnn", "format_version": "1", "architecture": json.dumps(spec),
                "class_names": json.dumps(CLASS_NAMES)}
    if state_dicts:
        write_safetensors(os.path.join(GOLDEN, "torch_%s.safetensors" % preset), state, metadata)
        write_safetensors(os.path.join(GOLDEN, "torch_%s_plain.safetensors" % preset), state)
    tx, loss, accuracy = write_outputs(model, "torch_%s_outputs.safetensors" % preset)
    # The same model as torch.onnx.export writes it (evaluation mode: PyTorch folds each
    # BatchNorm into its convolution), with a dynamic batch.
    torch.onnx.export(model, tx[:2], os.path.join(GOLDEN, "torch_%s.onnx" % preset),
                      input_names=["input"], output_names=["logits"], opset_version=onnx_opset,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    if preset == "resnet":
        # TrainingMode.PRESERVE keeps the BatchNormalization nodes (with the running
        # statistics) instead of folding them: the import of BatchNormalization is held to it.
        torch.onnx.export(model, tx[:2], os.path.join(GOLDEN, "torch_resnet_bn.onnx"),
                          input_names=["input"], output_names=["logits"], opset_version=13,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    print("exported %s: sample test accuracy %.4f, loss %.6f (torch %s)"
          % (preset, accuracy.item(), loss.item(), torch.__version__))


class Idioms(nn.Module):
    """A network written as PyTorch users write one, not from a cnn spec: F.max_pool2d with
    ceil_mode=True where the windows tile, a residual sum written x + y, a padded AvgPool2d
    (a Pad and an AveragePool in ONNX) and x.mean((2, 3)) for the global average (ReduceMean)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2, ceil_mode=True)  # 28 -> 14
        x = F.relu(x + self.conv2(x))
        return self.fc(self.pool(x).mean((2, 3)))


def export_module(name, make_model, lr, epochs):
    """Trains make_model() `epochs` epochs on the sample (SGD, momentum 0.9, torch's seed 1127,
    one thread) and writes torch_NAME.onnx (opset 13, dynamic batch) and
    torch_NAME_outputs.safetensors (PyTorch's evaluation-mode logits)."""
    torch.manual_seed(1127)
    torch.set_num_threads(1)
    model = make_model()
    train_on_sample(model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), epochs)
    tx, loss, accuracy = write_outputs(model, "torch_%s_outputs.safetensors" % name)
    torch.onnx.export(model, tx[:2], os.path.join(GOLDEN, "torch_%s.onnx" % name),
                      input_names=["input"], output_names=["logits"], opset_version=13,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    print("exported %s: sample test accuracy %.4f, loss %.6f (torch %s)"
          % (name, accuracy.item(), loss.item(), torch.__version__))


def export_idioms():
    """Idioms, five epochs at lr 0.1: torch_idioms.onnx and its outputs."""
    export_module("idioms", Idioms, 0.1, 5)


class Activations(nn.Module):
    """The two activations cnn imported last (2026-12-06), as PyTorch users write them:
    nn.LeakyReLU(0.2) and the default nn.LeakyReLU() (ONNX LeakyRelu with alpha) and nn.ReLU6
    (Clip with min 0 and max 6 as inputs)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(6, 4, 3), nn.ReLU6(), nn.Flatten(),  # 14 -> 12
            nn.Linear(4 * 12 * 12, 32), nn.LeakyReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)


def export_activations():
    """Activations, two epochs at lr 0.05: torch_activations.onnx and its outputs."""
    export_module("activations", Activations, 0.05, 2)


def export(cnn, presets):
    for preset in presets:
        if preset == "lenet5":
            export_trained(cnn, "lenet5", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 1,
                           onnx_opset=11)
        elif preset == "resnet":
            # Three epochs so that every BatchNorm's running statistics are far from their
            # initial (0, 1) and num_batches_tracked is large.
            export_trained(cnn, "resnet", lambda p: torch.optim.SGD(
                p, lr=0.05, momentum=0.9, weight_decay=5e-4), 3, onnx_opset=17)
        elif preset == "avgpool":
            # Average pooling with padding, which torch.onnx.export writes as a Pad of zeros and
            # an AveragePool without pads (count_include_pad=True, PyTorch's default): the
            # import of that pair is held to it.
            spec = {"name": "avgpool", "input": [1, 28, 28], "layers": [
                {"type": "Conv2d", "out_channels": 6, "kernel": 3, "padding": 1},
                {"type": "ReLU"},
                {"type": "AvgPool2d", "kernel": 3, "stride": 2, "padding": 1},
                {"type": "Conv2d", "out_channels": 8, "kernel": 3},
                {"type": "ReLU"},
                {"type": "AvgPool2d", "kernel": [2, 3], "stride": [2, 1], "padding": [1, 1]},
                {"type": "Flatten"},
                {"type": "Linear", "out_features": 10}]}
            path = os.path.join(GOLDEN, "avgpool_spec.json")
            with open(path, "w") as f:
                json.dump(spec, f)
            try:
                export_trained(cnn, path, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 1,
                               onnx_opset=13, name="avgpool", state_dicts=False)
            finally:
                os.remove(path)
        elif preset == "idioms":
            export_idioms()
        elif preset == "activations":
            export_activations()
        else:
            raise SystemExit("export: unknown preset %r (expected lenet5, resnet, avgpool, "
                             "idioms or activations)" % preset)


def check(model_path, data, cnn):
    tensors, _ = read_safetensors(model_path)
    info = cnn_info(cnn, model_path)
    spec = info["spec"]
    model = torch_model(info)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    data_dir = "/usr/share/datasets/fashion-mnist" if data == "fashion-mnist" else (
        SAMPLE if data == "sample" else data)
    x, y = load_split(data_dir, "t10k")
    classes = spec.get("classes")
    if classes:
        keep = torch.tensor([int(v) in classes for v in y])
        x, y = x[keep], torch.tensor([classes.index(int(v)) for v in y[keep]])
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    result = subprocess.run([cnn, "eval", model_path, "--data", data, "--json", "--logits"],
                            check=True, capture_output=True, text=True)
    ours = json.loads(result.stdout)
    ours_logits = torch.tensor(ours["logits"])
    if spec.get("loss") == "log_loss":
        torch_predicted = (logits[:, 0] >= 0.5).long()
    else:
        torch_predicted = logits.argmax(1)
    torch_accuracy = (torch_predicted == y).float().mean().item()
    diff = (ours_logits - logits).abs().max().item()
    scale = logits.abs().max().item()
    print("model %s (%s), %d test images" % (model_path, spec.get("name"), len(y)))
    print("torch.nn.Sequential.load_state_dict(strict=True): ok")
    print("accuracy: torch %.4f, cnn eval %.4f" % (torch_accuracy, ours["accuracy"]))
    print("logits: max |cnn - torch| %.3g, relative to max |logit| %.3g" % (diff, diff / scale))
    ok = diff <= 1e-5 * scale
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("--cnn", default=DEFAULT_CNN)
    e.add_argument("presets", nargs="*", default=["lenet5", "resnet"])
    c = sub.add_parser("check")
    c.add_argument("model")
    c.add_argument("--data", default="fashion-mnist")
    c.add_argument("--cnn", default=DEFAULT_CNN)
    args = parser.parse_args()
    if args.command == "export":
        export(args.cnn, args.presets)
        return 0
    return check(args.model, args.data, args.cnn)


if __name__ == "__main__":
    sys.exit(main())
