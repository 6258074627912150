"""Training of cells: one (arch, dataset, P, seed) each, several seeds of one (arch, dataset, P) per job.

Claim: a cell's trajectory depends only on its resolved config and seed. Evidence: tests/test_train.py
runs a cell twice (identical data columns) and kills a run mid-way and resumes it (identical again).

- Subsets are nested: the subset for a smaller P is a prefix of the one for a larger P (same seed).
- Three independent random streams derived from the cell's seed: data subset, initialisation
  (and dropout), batch order (one permutation per epoch, derived from (seed, epoch), so a resumed
  run needs no RNG state to find its place).
- A validation split, carved from the train split with a fixed seed shared by every cell, is never
  trained on; the official test set is only evaluated.
- Inputs (``training.normalization``, ``training.augmentation``; workflow_scripts.augment): images
  in [0, 1] normalised once on the device by the dataset's own statistics or the authors'
  constants; with ``augmentation: authors`` each training batch is augmented on the device inside
  the engine's step (their RandomAffine or random crop + flip), with parameters from a fourth
  stream derived from (seed, step), so a resumed run and both engines see the same batches.
  Evaluation (train, validation and test error) always sees the un-augmented images.
- Evaluation at log-spaced steps, always including step 0 (initialisation) and the last step.
- Checkpoints (model, optimiser, RNG, measure state, rows so far) every ``checkpoint_minutes`` at an
  evaluation point, outside the job's output, so a killed or preempted job resumes exactly. Each
  starts with a header holding its config hash and dataset sha256 (checked before anything is
  unpickled; another hash, e.g. another ``training.threads``, or another dataset file starts the
  cell over) and is read with ``weights_only=True``.
- A NaN/inf training loss stops the cell: its trajectory is kept up to that point and flagged
  ``status="diverged"`` with ``diverged_step``.

Engines (execution choices, not part of a cell's config or its hash; recorded in the trajectory
metadata as ``meta["engine"]``). Both run through one loop, ``run_cells``, which owns everything
above (checkpoints and resumption, schedule, batch order, recording, divergence, metadata); an
engine supplies only init, step, evaluate and its checkpoint state:
- ``sequential``: the seeds of a job one after the other, sharing the device-resident data. Exactly
  deterministic: a cell's trajectory is bit-identical whatever else is in its job.
- ``vmap``: the seeds of a job stacked into one vectorised model (``torch.func.functional_call`` under
  ``vmap`` over stacked parameters, each seed with its own subset and batch order; Adam/AdamW/SGD are
  elementwise, so one optimiser over the stacked tensors is a per-seed optimiser). Same
  initialisation, data, batch order and optimiser as ``sequential``; the trajectories agree up to
  float reassociation (batched kernels), so a cell's numbers may differ in the last bits with the
  job's other seeds. Only for models without BatchNorm or dropout (CNN without dropout, ViT); other
  models fall back to ``sequential``. Checkpoints hold the whole stack; resumption is exact. A
  trajectory's ``wall_time`` is then the training time of the whole stack.
- ``auto`` (default): ``vmap`` on CUDA where the model allows, else ``sequential`` (so CPU runs
  keep the exact determinism above).
Precision ``bf16`` (autocast) changes the numbers beyond float noise: it is opt-in, fp32 is the
default, and a trajectory says which it used. ``--channels-last`` (sequential engine; default: on
for the conv nets, whose convolutions it speeds up on CPU and GPU alike), ``--compile`` (also
compiles the vmapped forward) and the fused optimiser kernels change only float rounding; all stay
deterministic run to run.

    python -m workflow_scripts.train --cells "$(python -m workflow_scripts.config cells \
        config/quick.yaml --experiment main --arch cnn --dataset digits --P 100 --seeds 0 1)" \
        --data results/datasets/digits.npz --out /tmp/batch --checkpoint-dir /tmp/ckpt
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

# cuBLAS is deterministic only with a fixed workspace; it must be set before CUDA initialises
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import cell_id
from . import augment
from .datasets import load_canonical
from .io import atomic_path, remove_stale_temporaries
from .measures import ComplexityTracker
from .models import build_model
from .provenance import config_hash, provenance
from .trajectory import write_trajectory

ENGINES = ("auto", "sequential", "vmap")
PRECISIONS = ("fp32", "bf16")

# Stream ids of numpy SeedSequence([seed, stream, ...]): never reuse one for another purpose.
STREAM_DATA, STREAM_INIT, STREAM_ORDER, STREAM_AUGMENT = 0, 1, 2, 3
# Evaluation chunk per forward call. On a CPU, chunks that stay in cache are fastest (measured:
# the MNIST CNN at 128 is 1.4x faster than at 2048; bench/bench_train_cpu.py); a GPU wants them big.
EVAL_BATCH = {"cpu": 128, "cuda": 2048}


def stream_seed(seed: int, stream: int, *extra: int) -> int:
    return int(np.random.SeedSequence([seed, stream, *extra]).generate_state(1, np.uint64)[0] >> 1)


def split_indices(n_train: int, val_size: int, split_seed: int, P: int, seed: int):
    """(subset of size P, validation indices) into the official train split.

    The validation split is fixed for all cells (``split_seed``); the subset is the first P of a
    seed-dependent permutation of the remaining pool, so subsets are nested across P.
    """
    perm = np.random.default_rng(split_seed).permutation(n_train)
    val, pool = perm[:val_size], perm[val_size:]
    if P > len(pool):
        raise ValueError(f"P={P} exceeds the {len(pool)} training examples outside validation")
    order = np.random.default_rng(stream_seed(seed, STREAM_DATA)).permutation(len(pool))
    return pool[order[:P]], val


def eval_steps(total_steps: int, n_points: int) -> np.ndarray:
    """About ``n_points`` log-spaced steps in [0, total_steps], always with 0 and total_steps."""
    if total_steps < 1:
        raise ValueError("a cell needs at least one training step")
    logs = np.logspace(0, math.log10(total_steps), n_points - 1)
    return np.unique(np.concatenate([[0], np.rint(logs).astype(np.int64), [total_steps]]))


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


def mark_first_nonfinite(first_bad: torch.Tensor, loss: torch.Tensor, step: int) -> torch.Tensor:
    """``first_bad`` (−1: none yet) with ``step`` where ``loss`` (per seed) first became NaN/inf.

    Stays on the device: no host sync per step; the caller reads it at evaluation points.
    """
    return torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                       torch.full_like(first_bad, step), first_bad)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is visible")
    return torch.device(name)


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


def use_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its NaN fill of every
    newly allocated output (a guard against kernels that read memory they never wrote), which
    costs 4% of a CPU training run (MNIST CNN, ``torch.profiler``). Our results do not depend on
    it: the rerun and resume tests compare trajectories bit for bit."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


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


def checkpoint_path(checkpoint_dir, cell: dict) -> Path:
    return Path(checkpoint_dir) / f"{cell_id(cell)}.pt"


# A checkpoint is one file: this line, a JSON header with the config hash and the dataset's
# sha256, a newline, then torch.save's archive. Both are checked before anything is unpickled,
# and the archive is read with weights_only=True (tensors and plain containers only: our
# checkpoints need no other global), so a file planted under the checkpoint directory cannot run
# code.
CHECKPOINT_MAGIC = b"scaling-dynamics checkpoint v1 "


def _save_checkpoint(path: Path, state: dict) -> None:
    header = CHECKPOINT_MAGIC + json.dumps({k: state[k] for k in ("config_hash", "dataset_sha256")}
                                          ).encode() + b"\n"
    with atomic_path(path, ".pt") as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            torch.save(state, f)


def _load_checkpoint(path: Path, chash: str, dataset_sha256: str, log):
    remove_stale_temporaries(path)  # a SIGKILL during a checkpoint write leaves its temporary
    if not path.exists():
        return None
    # a checkpoint is a cache: a bad one is discarded, never trusted
    try:
        with open(path, "rb") as f:
            first = f.readline(4096)
            if not (first.startswith(CHECKPOINT_MAGIC) and first.endswith(b"\n")):
                log(f"ignoring checkpoint {path}: no checkpoint header (not written by this "
                    "pipeline's training); starting the cell over")
                return None
            header = json.loads(first[len(CHECKPOINT_MAGIC):])
            if header.get("config_hash") != chash:
                log(f"ignoring checkpoint {path}: made for another config (hash "
                    f"{header.get('config_hash')}, this cell's {chash}, e.g. another "
                    "training.threads); starting the cell over")
                return None
            if header.get("dataset_sha256") != dataset_sha256:
                log(f"ignoring checkpoint {path}: made on another dataset file (sha256 "
                    f"{str(header.get('dataset_sha256'))[:12]}…, now {dataset_sha256[:12]}…); "
                    "starting the cell over")
                return None
            state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        log(f"ignoring unreadable checkpoint {path}: {e}; starting the cell over")
        return None
    if not isinstance(state, dict) or state.get("config_hash") != chash or \
            state.get("dataset_sha256") != dataset_sha256:
        log(f"ignoring checkpoint {path}: its content does not match its header; "
            "starting the cell over")
        return None
    return state


# ------------------------------------------------------------------------- engines
def _same_but_seed(cells: list[dict]) -> bool:
    strip = [{k: v for k, v in c.items() if k != "seed"} for c in cells]
    return all(json.dumps(c, sort_keys=True) == json.dumps(strip[0], sort_keys=True) for c in strip)


def group_checkpoint_path(checkpoint_dir, cells: list[dict]) -> Path:
    """One checkpoint for a stack of seeds, named by the set of cells it holds."""
    c0 = cells[0]
    key = hashlib.sha256(",".join(sorted(config_hash(c) for c in cells)).encode()).hexdigest()[:16]
    return (Path(checkpoint_dir) / c0["experiment"] / c0["arch"] / c0["dataset"] / f"P{c0['P']}"
            / f"stack-{key}.pt")


def _explicit_attention(self, x):
    """models.Attention.forward with the attention written out: vmap has no batching rule for
    the fused scaled_dot_product_attention kernels (it would loop over the seeds)."""
    b, n, d = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    att = torch.softmax((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5), dim=-1)
    return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


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
        from .models import Attention
        for m in self.base.modules():
            if isinstance(m, Attention):
                m.forward = types.MethodType(_explicit_attention, m)

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


class _Engine:
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


class SequentialEngine(_Engine):
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


class StackedEngine(_Engine):
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


# ------------------------------------------------------------------------- the training loop
def run_cells(engine_cls: type[_Engine], cells: list[dict], data: DeviceData, out_paths,
              checkpoint_dir, device, log=print, opts: EngineOptions | None = None) -> list[dict]:
    """Train ``cells`` (seeds of one arch/dataset/P/training) with one engine, write each cell's
    trajectory to its path in ``out_paths``; return the trajectory metadata, in the cells' order.

    The one training loop of both engines. A cell with a done-checkpoint is rewritten, not
    retrained (whichever engine made it); the others resume from the engine's checkpoint if any.
    """
    opts = opts or EngineOptions()
    metas: dict[int, dict] = {}
    todo, loaded = [], {}
    for i, c in enumerate(cells):
        path = checkpoint_path(checkpoint_dir, c)
        state = _load_checkpoint(path, config_hash(c), data.sha256, log)
        if state is not None and state["done"]:
            log(f"{cell_id(c)}: finished earlier, rewriting its trajectory from {path}")
            write_trajectory(pd.DataFrame(state["rows"]), state["meta"], out_paths[i])
            metas[i] = state["meta"]
        else:
            todo.append(i)
            loaded[path] = state
    if not todo:
        return [metas[i] for i in range(len(cells))]

    group = [cells[i] for i in todo]
    engine = engine_cls(group, data, device, opts)
    c0, S = group[0], len(group)
    training, P, batch = c0["training"], c0["P"], c0["training"]["batch_size"]
    seeds, cids = [c["seed"] for c in group], [cell_id(c) for c in group]
    ckpt_path = engine.checkpoint_path(checkpoint_dir, group)
    chash = ",".join(config_hash(c) for c in group)
    # the sequential engine's checkpoint is its cell's own, read just above
    state = loaded[ckpt_path] if ckpt_path in loaded else \
        _load_checkpoint(ckpt_path, chash, data.sha256, log)

    subsets, val = [], None
    for c in group:
        sub, val = split_indices(len(data.y_train), c["data"]["val_size"],
                                 c["data"]["split_seed"], P, c["seed"])
        subsets.append(sub)
    engine.init(subsets, val)

    steps_per_epoch = math.ceil(P / batch)
    total = training["epochs"] * steps_per_epoch
    evals = eval_steps(total, training["eval_points"])
    rows: list[list[dict]] = [[] for _ in group]
    step, wall = 0, 0.0
    diverged: list[int | None] = [None] * S
    if state is not None:
        engine.load_state_dict(state)
        rows, step, wall = state["rows"], state["step"], state["wall_time"]
        if rows and isinstance(rows[0], dict):  # a one-cell checkpoint of the earlier layout
            rows = [rows]
        diverged = state.get("diverged", diverged)
        log(f"{engine.tag()}: resuming at step {step}/{total} from {ckpt_path}")

    def record(at_step):
        active = [s for s in range(S) if diverged[s] is None]  # a diverged seed's rows end
        tr = engine.evaluate("train")
        va = engine.evaluate("val")
        te = engine.evaluate("test")
        for s in active:
            measures = engine.trackers[s].compute()
            rows[s].append({"step": int(at_step), "epoch": at_step / steps_per_epoch,
                            "wall_time": wall, "train_error": float(tr[0][s]),
                            "train_loss": float(tr[1][s]), "val_error": float(va[0][s]),
                            "val_loss": float(va[1][s]), "test_error": float(te[0][s]),
                            "test_loss": float(te[1][s]),
                            "lambda": measures[training["measure"]], **measures})
            log(f"{cids[s]}: step {at_step}/{total} epoch {at_step / steps_per_epoch:.1f} "
                f"train_err {tr[0][s]:.4f} test_err {te[0][s]:.4f} λ {rows[s][-1]['lambda']:.4g}")

    def save_checkpoint():
        _save_checkpoint(ckpt_path, {"config_hash": chash, "dataset_sha256": data.sha256,
                                     "done": False, "rows": rows,
                                     "step": step, "wall_time": wall, "diverged": diverged,
                                     **engine.state_dict()})

    if step == 0 and not any(rows):
        record(0)
    pending = [int(s) for s in evals if s > step]
    last_ckpt = time.monotonic()
    perm, perm_epoch = None, -1
    first_bad = torch.full((S,), -1, dtype=torch.long, device=device)
    for target in pending:
        t0 = time.perf_counter()
        while step < target:
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:  # derived from (seed, epoch): a resumed run needs no RNG state
                perm = torch.from_numpy(np.stack([np.random.default_rng(
                    stream_seed(sd, STREAM_ORDER, epoch)).permutation(P) for sd in seeds])
                ).to(device)
                perm_epoch = epoch
            losses = engine.step(perm[:, pos * batch:(pos + 1) * batch], step)  # (S, b)
            first_bad = mark_first_nonfinite(first_bad, losses, step + 1)
            step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall += time.perf_counter() - t0
        for s, bad in enumerate(first_bad.tolist()):
            if bad >= 0 and diverged[s] is None:
                diverged[s] = int(bad)
                log(f"{cids[s]}: non-finite training loss at step {bad}; stopping (diverged)")
        if all(d is not None for d in diverged):
            break
        record(step)
        if time.monotonic() - last_ckpt >= 60 * training["checkpoint_minutes"] and step < total:
            save_checkpoint()
            last_ckpt = time.monotonic()

    for s, c in enumerate(group):
        meta = provenance(config=c, device=device)
        meta.update(cell_id=cids[s], status="diverged" if diverged[s] is not None else "completed",
                    diverged_step=diverged[s], dataset_sha256=data.sha256,
                    n_params=engine.n_params, steps_per_epoch=steps_per_epoch, total_steps=total,
                    planned_eval_steps=[int(e) for e in evals],
                    input_protocol={"mean": data.mean.tolist(), "std": data.std.tolist(),
                                    "augmentation": (engine.augmenter.kind if engine.augmenter
                                                     else None)},
                    engine=opts.meta(engine.name, seeds, engine.channels_last))
        write_trajectory(pd.DataFrame(rows[s]), meta, out_paths[todo[s]])
        # small: a rerun with either engine rewrites this trajectory without training
        cell_ckpt = checkpoint_path(checkpoint_dir, c)
        _save_checkpoint(cell_ckpt, {"config_hash": config_hash(c), "dataset_sha256": data.sha256,
                                     "done": True,
                                     "rows": rows[s], "step": step, "wall_time": wall,
                                     "meta": meta})
        metas[todo[s]] = meta
    if ckpt_path not in {checkpoint_path(checkpoint_dir, c) for c in group}:
        ckpt_path.unlink(missing_ok=True)  # a stack's own state is no longer needed
    return [metas[i] for i in range(len(cells))]


def train_cell(cell: dict, data: DeviceData, out_path, checkpoint_dir, device, log=print,
               opts: EngineOptions | None = None) -> dict:
    """Train one cell (sequential engine), write its trajectory to ``out_path``; return the
    trajectory metadata."""
    return run_cells(SequentialEngine, [cell], data, [out_path], checkpoint_dir, device, log,
                     opts)[0]


def train_cells_vmap(cells: list[dict], data: DeviceData, out_dir, checkpoint_dir, device,
                     log=print, opts: EngineOptions | None = None) -> list[dict]:
    """Train the seeds of one (arch, dataset, P, training) together as one vectorised model.

    Same loop as ``train_cell`` (``run_cells``): same initialisation, subsets, batch orders,
    evaluation points, measures, divergence rule and checkpoint contract; see the module docstring
    for what differs.
    """
    opts = opts or EngineOptions()
    if not _same_but_seed(cells):
        raise ValueError("the vmap engine stacks cells that differ only in their seed")
    if opts.channels_last:
        log("--channels-last is ignored by the vmap engine (stacked inputs are 5-D)")
    out_dir = Path(out_dir)
    return run_cells(StackedEngine, cells, data, [out_dir / f"seed{c['seed']}.parquet"
                                                  for c in cells], checkpoint_dir, device, log, opts)


def choose_engine(cells: list[dict], device: torch.device, requested: str) -> str:
    """'vmap' or 'sequential' for these cells (see the module docstring)."""
    if requested not in ENGINES:
        raise ValueError(f"unknown engine {requested!r}; expected one of {ENGINES}")
    if requested == "sequential" or requested == "auto" and (len(cells) < 2 or
                                                              device.type != "cuda"):
        return "sequential"
    c0 = cells[0]
    probe = build_model(c0["arch"], c0["dataset"])  # structure only; its init is discarded
    ok = vmappable(probe) and _same_but_seed(cells)
    if requested == "vmap":
        if not ok:
            raise ValueError(f"engine 'vmap' needs cells that differ only in their seed and a model "
                             f"without BatchNorm/dropout; {c0['arch']} on {c0['dataset']} is not")
        return "vmap"
    return "vmap" if ok else "sequential"


def device_data(cells: list[dict], canonical, device) -> DeviceData:
    """The job's data on the device, normalised as its cells ask (one normalisation per job)."""
    norms = {(tuple(m), tuple(s)) for m, s in (
        augment.normalisation(c["training"], c["arch"], c["dataset"], canonical) for c in cells)}
    if len(norms) != 1:
        raise ValueError(f"one job holds one normalisation of its data; its cells ask for "
                         f"{sorted(norms)}")
    (mean, std), = norms
    return DeviceData(canonical, device, mean, std)


def train_batch(cells: list[dict], data_path, out_dir, checkpoint_dir, device="auto",
                log=print, opts: EngineOptions | None = None) -> list[dict]:
    """Train cells (seeds of one arch/dataset/P) in this process; one Parquet per cell in out_dir."""
    opts = opts or EngineOptions()
    if not cells:
        raise ValueError("no cells to train")
    datasets = {c["dataset"] for c in cells}
    if len(datasets) != 1:
        raise ValueError(f"one job trains one dataset; got {sorted(datasets)}")
    threads = {c["training"]["threads"] for c in cells}
    if len(threads) != 1:
        raise ValueError(f"one job trains with one thread count; got {sorted(threads)}")
    # the cell's own setting (in its hash), never the job's core count: on a CPU the float
    # reduction order, and so the trajectory, depends on it
    torch.set_num_threads(threads.pop())
    log(f"training with {torch.get_num_threads()} CPU threads (training.threads)")
    use_deterministic_algorithms()
    dev = resolve_device(device if device != "auto" else cells[0]["training"]["device"])
    rng_state = torch.get_rng_state()
    engine = choose_engine(cells, dev, opts.engine)
    torch.set_rng_state(rng_state)  # the probe model must not shift anything
    data = device_data(cells, load_canonical(data_path), dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if engine == "vmap":
        t0 = time.perf_counter()
        metas = train_cells_vmap(cells, data, out_dir, checkpoint_dir, dev, log, opts)
        log(f"{len(cells)} cells stacked (vmap): "
            f"{', '.join(m['status'] for m in metas)} in {time.perf_counter() - t0:.1f} s")
    else:
        metas = []
        for cell in cells:
            t0 = time.perf_counter()
            metas.append(train_cell(cell, data, out_dir / f"seed{cell['seed']}.parquet",
                                    checkpoint_dir, dev, log, opts))
            log(f"{cell_id(cell)}: {metas[-1]['status']} in {time.perf_counter() - t0:.1f} s")
    if dev.type == "cuda":  # read by bench/bench_train_gpu.py
        log(f"peak device memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")
    return metas


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", required=True,
                        help="JSON list of resolved cell configs (python -m workflow_scripts.config cells)")
    parser.add_argument("--data", required=True, help="canonical dataset .npz")
    parser.add_argument("--out", required=True, help="directory for seed<k>.parquet")
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: the cells' training.device")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="auto: vmap on CUDA where the model allows, else sequential")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="bf16: autocast (changes results; recorded in the trajectory)")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                        help="channels_last memory layout in the sequential engine "
                             "(auto: on for CNN and ResNet)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    args = parser.parse_args(argv)
    cells = json.loads(args.cells)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    cl = {"auto": None, "on": True, "off": False}[args.channels_last]
    opts = EngineOptions(args.engine, args.precision, cl, args.compile)
    train_batch(cells, args.data, args.out, args.checkpoint_dir, args.device, log, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
