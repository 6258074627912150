"""The training engines: how a job's seeds are stepped and evaluated, given the loop of ``train``.

``train.run_cells`` owns a run (checkpoint files and resumption, evaluation schedule, batch order,
recording, divergence, metadata); an engine supplies only init, step, evaluate and its checkpoint
state. Also here, because the engines need them and must not import ``train``: the cells' random
streams, the optimiser, the job's data on the device and the checkpoint file names.

Engines (execution choices, not part of a cell's config or its hash; recorded in the trajectory
metadata as ``meta["engine"]``):
- ``sequential``: the seeds of a job one after the other, sharing the device-resident data. Exactly
  deterministic: a cell's trajectory is bit-identical whatever else is in its job.
- ``vmap``: the seeds of a job stacked into one vectorised model (``torch.func.functional_call`` under
  ``vmap`` over stacked parameters, each seed with its own subset and batch order; Adam/AdamW/SGD are
  elementwise, so one optimiser over the stacked tensors is a per-seed optimiser). Same
  initialisation, data, batch order and optimiser as ``sequential``; the trajectories agree up to
  float reassociation (batched kernels, and the ViT's attention written out rather than fused, see
  ``models.Attention``), so a cell's numbers may differ in the last bits with the job's other
  seeds. Only for models without BatchNorm or dropout (CNN without dropout, ViT); other models fall
  back to ``sequential``. Checkpoints hold the whole stack; resumption is exact. A trajectory's
  ``wall_time`` is then the training time of the whole stack.
- ``auto`` (default): ``vmap`` on CUDA where the model allows, else ``sequential`` (so CPU runs
  keep the exact determinism above).
Precision ``bf16`` (autocast) changes the numbers beyond float noise: it is opt-in, fp32 is the
default, and a trajectory says which it used. ``--channels-last`` (sequential engine; default: on
for the conv nets, whose convolutions it speeds up on CPU and GPU alike), ``--compile`` (also
compiles the vmapped forward) and the fused optimiser kernels change only float rounding; all stay
deterministic run to run.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import augment
from .config import cell_id
from .measures import ComplexityTracker
from .models import Attention, build_model
from .provenance import config_hash

ENGINES = ("auto", "sequential", "vmap")
PRECISIONS = ("fp32", "bf16")

# Stream ids of numpy SeedSequence([seed, stream, ...]): never reuse one for another purpose.
STREAM_DATA, STREAM_INIT, STREAM_ORDER, STREAM_AUGMENT = 0, 1, 2, 3
# Evaluation chunk per forward call. On a CPU, chunks that stay in cache are fastest (measured:
# the MNIST CNN at 128 is 1.4x faster than at 2048; bench/bench_train_cpu.py); a GPU wants them big.
EVAL_BATCH = {"cpu": 128, "cuda": 2048}


def stream_seed(seed: int, stream: int, *extra: int) -> int:
    return int(np.random.SeedSequence([seed, stream, *extra]).generate_state(1, np.uint64)[0] >> 1)



def make_optimizer(model_or_params, training: dict, fused: bool = True):
    """The cell's optimiser over a model's parameters (or an iterable of tensors).

    ``fused``: PyTorch's one-kernel implementation (CPU and CUDA), the same update rule in another
    float order. On a CPU it is 7x faster than the default per-tensor loop (6 vs 49 ms per Adam
    step on the 12.9 M-parameter MNIST CNN), about 15% of a training step. False: the default
    implementation, for the reference loop of bench/.
    """
    params = (model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module)
              else list(model_or_params))
    lr, wd = training["lr"], training["weight_decay"]
    kw = {"fused": True} if fused else {}
    if training["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, **kw)
    if training["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw)
    if training["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=training["momentum"], weight_decay=wd, **kw)
    raise ValueError(f"unknown optimizer {training['optimizer']!r}")


@dataclass
class EngineOptions:
    """How a job runs (not what it computes): see the module docstring."""
    engine: str = "auto"
    precision: str = "fp32"
    channels_last: bool | None = None  # None: on for the conv nets (CNN, ResNet), sequential engine
    compile: bool = False

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {ENGINES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")

    def autocast(self, device: torch.device):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def meta(self, name: str, seeds, channels_last: bool) -> dict:
        return {**asdict(self), "engine": name, "requested": self.engine,
                "channels_last": bool(channels_last), "seeds_together": [int(s) for s in seeds]}

    def use_channels_last(self, arch: str) -> bool:
        if self.channels_last is None:
            return arch in ("cnn", "resnet")
        return self.channels_last


def vmappable(model: torch.nn.Module) -> bool:
    """Whether the seeds of this model can be stacked: no BatchNorm (running statistics are
    in-place buffer updates) and no active dropout (its random stream would differ)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase):
            return False
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            return False
    return True


@torch.inference_mode()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, autocast=None) -> tuple[float, float]:
    """(error, mean cross-entropy) of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, wrong = 0.0, 0
    chunk = EVAL_BATCH[x.device.type]
    for i in range(0, len(y), chunk):
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(x[i:i + chunk])
        logits = logits.float()
        target = y[i:i + chunk]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        wrong += (logits.argmax(1) != target).sum().item()
    model.train(was_training)
    return wrong / len(y), loss_sum / len(y)


class DeviceData:
    """The canonical dataset, normalised once and held on the device as tensors.

    ``mean``/``std``: per channel, of the images scaled to [0, 1] (``augment.normalisation``);
    default: the canonical file's own statistics.
    """

    def __init__(self, data, device, mean=None, std=None):
        self.mean = np.asarray(data.mean if mean is None else mean, np.float32)
        self.std = np.asarray(data.std if std is None else std, np.float32)
        if self.mean.shape != (data.x_train.shape[1],) or self.std.shape != self.mean.shape:
            raise ValueError(f"normalisation mean {self.mean.tolist()} / std {self.std.tolist()} "
                             f"does not match the data's {data.x_train.shape[1]} channel(s)")

        def prep(x):
            t = torch.from_numpy(x).to(device=device, dtype=torch.float32)
            if x.dtype == np.uint8:
                t = t / 255.0
            mean = torch.as_tensor(self.mean, device=device).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std, device=device).view(1, -1, 1, 1)
            return (t - mean) / std

        self.sha256 = data.sha256
        self.x_train, self.x_test = prep(data.x_train), prep(data.x_test)
        self.y_train = torch.from_numpy(data.y_train).to(device)
        self.y_test = torch.from_numpy(data.y_test).to(device)


# ------------------------------------------------------------------------- checkpoint names
def checkpoint_path(checkpoint_dir, cell: dict) -> Path:
    return Path(checkpoint_dir) / f"{cell_id(cell)}.pt"


def group_checkpoint_path(checkpoint_dir, cells: list[dict]) -> Path:
    """One checkpoint for a stack of seeds, named by the set of cells it holds."""
    c0 = cells[0]
    key = hashlib.sha256(",".join(sorted(config_hash(c) for c in cells)).encode()).hexdigest()[:16]
    return (Path(checkpoint_dir) / c0["experiment"] / c0["arch"] / c0["dataset"] / f"P{c0['P']}"
            / f"stack-{key}.pt")


# ------------------------------------------------------------------------- engines
def same_but_seed(cells: list[dict]) -> bool:
    """Whether the cells differ only in their seed (so that they can be stacked)."""
    strip = [{k: v for k, v in c.items() if k != "seed"} for c in cells]
    return all(json.dumps(c, sort_keys=True) == json.dumps(strip[0], sort_keys=True) for c in strip)


class StackedModels:
    """S models of one architecture as one vectorised model over stacked parameters.

    ``params`` maps each parameter name to an (S, ...) leaf tensor; ``models[s]`` are ordinary
    modules (the per-seed initialisations) whose parameters become views of slice s of the stack
    (no copy, always current), so that the complexity trackers read each seed's weights through the
    same code as the sequential engine.
    """

    def __init__(self, models: list[torch.nn.Module], compile_forward: bool = False):
        from torch.func import functional_call
        self.models = models
        names = [n for n, _ in models[0].named_parameters()]
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
                       .requires_grad_(True) for n in names}
        self.base = copy.deepcopy(models[0]).to("meta")  # structure only, for functional_call
        with torch.no_grad():
            for s, m in enumerate(models):
                for n, p in m.named_parameters():
                    p.data = self.params[n].detach()[s]
        for m in self.base.modules():
            if isinstance(m, Attention):
                m.fused = False  # vmap batches the written-out attention, not the fused kernels

        def one(p, x):
            return functional_call(self.base, p, (x,))

        self.per_seed_inputs = torch.vmap(one, in_dims=(0, 0))  # x: (S, B, ...)
        self.shared_inputs = torch.vmap(one, in_dims=(0, None))  # x: (B, ...)
        if compile_forward:
            self.per_seed_inputs = torch.compile(self.per_seed_inputs)
            self.shared_inputs = torch.compile(self.shared_inputs)

    def __len__(self):
        return len(self.models)

    def train(self, mode: bool = True):
        self.base.train(mode)

    @torch.inference_mode()
    def evaluate(self, x, y, autocast) -> tuple[np.ndarray, np.ndarray]:
        """Per-seed (errors, mean losses): x, y either shared (B, ...) or per seed (S, B, ...)."""
        per_seed = y.ndim == 2
        n, S = y.shape[-1], len(self)
        self.base.eval()
        loss_sum = torch.zeros(S, dtype=torch.float64, device=y.device)
        wrong = torch.zeros(S, dtype=torch.long, device=y.device)
        # EVAL_BATCH examples per call in all (not per seed): the stack's evaluation needs no
        # more activation memory than one sequential run's
        chunk = max(EVAL_BATCH[y.device.type] // S, 16)
        for i in range(0, n, chunk):
            xb = x[:, i:i + chunk] if per_seed else x[i:i + chunk]
            yb = y[:, i:i + chunk] if per_seed else y[i:i + chunk].expand(S, -1)
            with autocast():
                logits = (self.per_seed_inputs if per_seed else self.shared_inputs)(self.params, xb)
            logits = logits.float()
            ce = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
            loss_sum += ce.view(S, -1).double().sum(1)
            wrong += (logits.argmax(-1) != yb).sum(1)
        self.base.train()
        return (wrong.cpu().numpy() / n), (loss_sum.cpu().numpy() / n)


class Engine:
    """What differs between the engines, and only that: ``init`` (the seeds' data on the device,
    their models, optimiser and complexity trackers), ``step`` (one optimiser step on a batch of
    indices per seed, the batch augmented for that step number if the cells ask for it, returning
    the per-seed losses), ``evaluate`` (per-seed error and loss on a
    split) and the model/optimiser/tracker part of a checkpoint (``state_dict``,
    ``load_state_dict``). Everything else (done-checkpoints, resumption, evaluation schedule, batch
    order, recording, checkpoint timing, divergence, metadata, writing) is ``run_cells``'s.
    """
    name: str
    channels_last = False

    def __init__(self, cells: list[dict], data: DeviceData, device, opts: EngineOptions):
        self.cells, self.data, self.device, self.opts = cells, data, device, opts
        self.training = cells[0]["training"]
        kind = augment.augmentation(self.training, cells[0]["arch"], cells[0]["dataset"])
        self.augmenter = (augment.BatchAugmenter(kind, data.mean, data.std, device) if kind
                          else None)

    def augmented(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """The training batch x (its cells' blocks, in order) as the model sees it at ``step``."""
        if self.augmenter is None:
            return x
        return self.augmenter(x, [stream_seed(c["seed"], STREAM_AUGMENT, step)
                                  for c in self.cells])

    @staticmethod
    def checkpoint_path(checkpoint_dir, cells: list[dict]) -> Path:
        raise NotImplementedError

    def tag(self) -> str:
        raise NotImplementedError

    def autocast(self):
        return self.opts.autocast(self.device)


class SequentialEngine(Engine):
    """One cell, one ordinary model: exactly deterministic (see the module docstring)."""
    name = "sequential"

    def __init__(self, cells, data, device, opts):
        if len(cells) != 1:
            raise ValueError("the sequential engine trains one cell at a time")
        super().__init__(cells, data, device, opts)
        self.channels_last = opts.use_channels_last(cells[0]["arch"])

    @staticmethod
    def checkpoint_path(checkpoint_dir, cells):
        return checkpoint_path(checkpoint_dir, cells[0])  # in progress and done: the cell's own

    def tag(self):
        return cell_id(self.cells[0])

    def init(self, subsets, val):
        cell, data, device = self.cells[0], self.data, self.device
        subset_t = torch.from_numpy(subsets[0]).to(device)
        x_sub, self.y_sub = data.x_train[subset_t], data.y_train[subset_t]
        val_t = torch.from_numpy(val).to(device)
        x_val, self.y_val = data.x_train[val_t], data.y_train[val_t]
        torch.manual_seed(stream_seed(cell["seed"], STREAM_INIT))
        model = build_model(cell["arch"], cell["dataset"], self.training["init_scale"]).to(device)
        x_test = data.x_test
        if self.channels_last:  # a memory layout: same maths, other rounding; faster convs
            model = model.to(memory_format=torch.channels_last)
            x_sub, x_val, x_test = (t.contiguous(memory_format=torch.channels_last)
                                    for t in (x_sub, x_val, x_test))
        self.x_sub, self.x_val, self.x_test = x_sub, x_val, x_test
        self.model = model
        self.optimizer = make_optimizer(model, self.training)
        self.trackers = [ComplexityTracker(model)]
        self.forward = torch.compile(model) if self.opts.compile else model
        self.n_params = sum(p.numel() for p in model.parameters())
        model.train()

    def evaluate(self, split):
        x, y = {"train": (self.x_sub, self.y_sub), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.data.y_test)}[split]
        err, loss = evaluate(self.forward, x, y, self.autocast)
        return [err], [loss]

    def step(self, idx, step):
        idx = idx[0]  # (1, b): the loop's batch order has one row per seed
        self.optimizer.zero_grad(set_to_none=True)
        xb = self.x_sub[idx]
        if self.augmenter is not None:
            xb = self.augmented(xb, step)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            logits = self.forward(xb)
        loss = F.cross_entropy(logits.float(), self.y_sub[idx])
        loss.backward()
        self.optimizer.step()
        return loss

    def state_dict(self):
        # the global RNG drives dropout: a resumed run continues its stream
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "tracker": self.trackers[0].state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": cuda_rng}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.trackers[0].load_state_dict(state["tracker"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


class StackedEngine(Engine):
    """The seeds of one (arch, dataset, P, training) as one vectorised model (``vmap``)."""
    name = "vmap"

    @staticmethod
    def checkpoint_path(checkpoint_dir, cells):
        return group_checkpoint_path(checkpoint_dir, cells)

    def tag(self):
        seeds = ",".join(str(c["seed"]) for c in self.cells)
        return f"{cell_id(self.cells[0]).rsplit('/', 1)[0]}/seeds{{{seeds}}}"

    def init(self, subsets, val):
        data, device, c0 = self.data, self.device, self.cells[0]
        subset_t = torch.from_numpy(np.stack(subsets)).to(device)  # (S, P)
        self.x_sub, self.y_sub = data.x_train[subset_t], data.y_train[subset_t]  # (S, P, ...)
        val_t = torch.from_numpy(val).to(device)
        self.x_val, self.y_val = data.x_train[val_t], data.y_train[val_t]
        models = []
        for c in self.cells:  # the per-seed initialisation of the sequential engine
            torch.manual_seed(stream_seed(c["seed"], STREAM_INIT))
            models.append(build_model(c["arch"], c["dataset"], self.training["init_scale"])
                          .to(device))
        if not vmappable(models[0]):
            raise ValueError(f"{c0['arch']} on {c0['dataset']} has BatchNorm or dropout: "
                             "train it with the sequential engine")
        self.stack = StackedModels(models, compile_forward=self.opts.compile)
        self.optimizer = make_optimizer(self.stack.params.values(), self.training)
        self.trackers = [ComplexityTracker(m) for m in models]
        self.n_params = sum(p.numel() for p in models[0].parameters())
        self.seed_rows = torch.arange(len(models), device=device).unsqueeze(1)
        self.stack.train()

    def evaluate(self, split):
        x, y = {"train": (self.x_sub, self.y_sub), "val": (self.x_val, self.y_val),
                "test": (self.data.x_test, self.data.y_test)}[split]
        return self.stack.evaluate(x, y, self.autocast)

    def step(self, idx, step):
        self.optimizer.zero_grad(set_to_none=True)
        xb, yb = self.x_sub[self.seed_rows, idx], self.y_sub[self.seed_rows, idx]
        if self.augmenter is not None:
            xb = self.augmented(xb.flatten(0, 1), step).view(xb.shape)
        with self.autocast():
            logits = self.stack.per_seed_inputs(self.stack.params, xb)
        losses = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(),
                                 reduction="none").view(len(self.cells), -1).mean(1)
        # the sum's gradient w.r.t. seed s's parameters is seed s's own gradient
        losses.sum().backward()
        self.optimizer.step()
        return losses

    def state_dict(self):
        return {"optimizer": self.optimizer.state_dict(),
                "params": {n: p.detach().cpu() for n, p in self.stack.params.items()},
                "trackers": [t.state_dict() for t in self.trackers]}

    def load_state_dict(self, state):
        with torch.no_grad():
            for n, p in self.stack.params.items():
                p.copy_(state["params"][n].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        for t, st in zip(self.trackers, state["trackers"]):
            t.load_state_dict(st)


def choose_engine(cells: list[dict], device: torch.device, requested: str) -> str:
    """'vmap' or 'sequential' for these cells (see the module docstring)."""
    if requested not in ENGINES:
        raise ValueError(f"unknown engine {requested!r}; expected one of {ENGINES}")
    if requested == "sequential" or requested == "auto" and (len(cells) < 2 or
                                                              device.type != "cuda"):
        return "sequential"
    c0 = cells[0]
    probe = build_model(c0["arch"], c0["dataset"])  # structure only; its init is discarded
    ok = vmappable(probe) and same_but_seed(cells)
    if requested == "vmap":
        if not ok:
            raise ValueError(f"engine 'vmap' needs cells that differ only in their seed and a model "
                             f"without BatchNorm/dropout; {c0['arch']} on {c0['dataset']} is not")
        return "vmap"
    return "vmap" if ok else "sequential"
