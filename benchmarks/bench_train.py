"""Training throughput of vaelib.train against a loop written like pytorch/examples ``vae/main.py``.

Both train the same 784-400-20 ReLU VAE with Adam (lr 1e-3), batch 128, in the same process. The
reference is the canonical example's loop: a DataLoader over a TensorDataset of (1, 28, 28)
grey-level images, each batch moved to the device, ``.item()`` every step. vaelib.train keeps the
data on the device, draws batches from an on-device permutation, binarizes every batch (extra work
the reference does not do), and reads the loss back once per epoch.

    python benchmarks/bench_train.py              # the bundled subset (10,000 images), best device
    python benchmarks/bench_train.py --data-dir DIR --device cuda --epochs 3   # full MNIST

Prints one JSON object; no assertions (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaelib.data import load_mnist, load_mnist_subset, to_unit_interval
from vaelib.device import default_device
from vaelib.train import train
from vaelib.vae import VAE


class ReferenceVAE(nn.Module):
    """The model of pytorch/examples vae/main.py, verbatim in structure."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def reference_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_train(images: torch.Tensor, device: torch.device, epochs: int,
                    batch_size: int) -> tuple[float, float]:
    """The example's loop; returns (wall, CPU) seconds. images: (N, 1, 28, 28) in [0, 1], CPU."""
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images))), batch_size=batch_size,
                        shuffle=True, **kwargs)
    model = ReferenceVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(epochs):
        model.train()
        train_loss = 0
        for data, _ in loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = reference_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
    return time.perf_counter() - start, time.process_time() - cpu_start


def vaelib_train(train_x: torch.Tensor, epochs: int,
                 batch_size: int) -> tuple[float, float, list[float]]:
    """vaelib.train on the same architecture; returns (wall, CPU, per-epoch wall) seconds."""
    model = VAE.from_preset("pytorch-example").to(train_x.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    history = train(model, train_x, epochs=epochs, batch_size=batch_size, lr=1e-3, progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    per_epoch = [b - a for a, b in zip([0.0] + history.seconds[:-1], history.seconds)]
    return seconds, cpu_seconds, per_epoch


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best one present)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data-dir", default=None,
                   help="full MNIST from this folder (default: the bundled subset)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: vaelib's rule, README 'Shared machines')")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternate the two this many times; the best time counts")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    mnist = load_mnist(args.data_dir, download=False) if args.data_dir else load_mnist_subset()
    images = to_unit_interval(mnist.train_images)  # (N, 784) in [0, 1]
    train_x = images.to(device)
    N, B = len(images), args.batch_size

    reference_train(images[:1280].view(-1, 1, 28, 28), device, 1, B)  # warm-up: first-call costs
    vaelib_train(train_x[:1280], 1, B)
    ref_times, lib_times, ref_cpu, lib_cpu, lib_epochs = [], [], [], [], []
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        torch.manual_seed(0)
        seconds, cpu_seconds = reference_train(images.view(-1, 1, 28, 28), device, args.epochs, B)
        ref_times.append(seconds)
        ref_cpu.append(cpu_seconds)
        torch.manual_seed(0)
        seconds, cpu_seconds, per_epoch = vaelib_train(train_x, args.epochs, B)
        lib_times.append(seconds)
        lib_cpu.append(cpu_seconds)
        lib_epochs.extend(per_epoch)
    ref_images = N * args.epochs
    lib_images = (N // B) * B * args.epochs
    result = {
        "benchmark": "train",
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dataset": "mnist" if args.data_dir else "mnist-subset",
        "num_images": N,
        "epochs": args.epochs,
        "batch_size": B,
        "reference_seconds": ref_times,
        "vaelib_seconds": lib_times,
        "reference_images_per_s": ref_images / min(ref_times),
        "vaelib_images_per_s": lib_images / min(lib_times),
        "speedup": (lib_images / min(lib_times)) / (ref_images / min(ref_times)),
        "speedup_median": ((lib_images / statistics.median(lib_times))
                           / (ref_images / statistics.median(ref_times))),
        "reference_cpu_seconds": ref_cpu,
        "vaelib_cpu_seconds": lib_cpu,
        "speedup_cpu_time": (min(ref_cpu) / ref_images) / (min(lib_cpu) / lib_images),
        "vaelib_fastest_epoch_seconds": min(lib_epochs),
        "vaelib_fastest_epoch_seconds_per_60k": min(lib_epochs) * 60_000 / N,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
