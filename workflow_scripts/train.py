"""Training of cells: one (arch, dataset, P, seed) each, several seeds of one (arch, dataset, P) per job.

Claim: a cell's trajectory depends only on its resolved config and seed. Evidence: tests/test_train.py
runs a cell twice (identical data columns) and kills a run mid-way and resumes it (identical again).

- Subsets are nested: the subset for a smaller P is a prefix of the one for a larger P (same seed).
- Three independent random streams derived from the cell's seed: data subset, initialisation
  (and dropout), batch order (one permutation per epoch, derived from (seed, epoch), so a resumed
  run needs no RNG state to find its place).
- A validation split, carved from the train split with a fixed seed shared by every cell, is never
  trained on; the official test set is only evaluated. No augmentation anywhere.
- Evaluation at log-spaced steps, always including step 0 (initialisation) and the last step.
- Checkpoints (model, optimiser, RNG, measure state, rows so far) every ``checkpoint_minutes`` at an
  evaluation point, outside the job's output, so a killed or preempted job resumes exactly.
- A NaN/inf training loss stops the cell: its trajectory is kept up to that point and flagged
  ``status="diverged"`` with ``diverged_step``.

    python -m workflow_scripts.train --cells "$(python -m workflow_scripts.config cells \
        config/quick.yaml --experiment main --arch cnn --dataset digits --P 100 --seeds 0 1)" \
        --data results/datasets/digits.npz --out /tmp/batch --checkpoint-dir /tmp/ckpt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import cell_id
from .datasets import load_canonical
from .io import atomic_path
from .measures import MEASURES, ComplexityTracker
from .models import build_model
from .provenance import config_hash, provenance
from .trajectory import write_trajectory

# Stream ids of numpy SeedSequence([seed, stream, ...]): never reuse one for another purpose.
STREAM_DATA, STREAM_INIT, STREAM_ORDER = 0, 1, 2
EVAL_BATCH = 2048


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


def make_optimizer(model, training: dict):
    params, lr, wd = model.parameters(), training["lr"], training["weight_decay"]
    if training["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if training["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if training["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=training["momentum"], weight_decay=wd)
    raise ValueError(f"unknown optimizer {training['optimizer']!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no CUDA device is visible")
    return torch.device(name)


@torch.inference_mode()
def evaluate(model, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(error, mean cross-entropy) of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, wrong = 0.0, 0
    for i in range(0, len(y), EVAL_BATCH):
        logits = model(x[i:i + EVAL_BATCH]).float()
        target = y[i:i + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        wrong += (logits.argmax(1) != target).sum().item()
    model.train(was_training)
    return wrong / len(y), loss_sum / len(y)


class DeviceData:
    """The canonical dataset, normalised once and held on the device as tensors."""

    def __init__(self, data, device):
        def prep(x):
            t = torch.from_numpy(x).to(device=device, dtype=torch.float32)
            if x.dtype == np.uint8:
                t = t / 255.0
            mean = torch.as_tensor(data.mean, device=device).view(1, -1, 1, 1)
            std = torch.as_tensor(data.std, device=device).view(1, -1, 1, 1)
            return (t - mean) / std

        self.sha256 = data.sha256
        self.x_train, self.x_test = prep(data.x_train), prep(data.x_test)
        self.y_train = torch.from_numpy(data.y_train).to(device)
        self.y_test = torch.from_numpy(data.y_test).to(device)


def checkpoint_path(checkpoint_dir, cell: dict) -> Path:
    return Path(checkpoint_dir) / f"{cell_id(cell)}.pt"


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, chash: str, log):
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a checkpoint is a cache: a bad one is discarded, never trusted
        log(f"ignoring unreadable checkpoint {path}: {e}")
        return None
    if state.get("config_hash") != chash:
        log(f"ignoring checkpoint {path}: made for another config")
        return None
    return state


def train_cell(cell: dict, data: DeviceData, out_path, checkpoint_dir, device, log=print) -> dict:
    """Train one cell, write its trajectory to ``out_path``; return the trajectory metadata."""
    training, cid, chash = cell["training"], cell_id(cell), config_hash(cell)
    ckpt_path = checkpoint_path(checkpoint_dir, cell)
    state = _load_checkpoint(ckpt_path, chash, log)
    if state is not None and state["done"]:
        log(f"{cid}: finished earlier, rewriting its trajectory from {ckpt_path}")
        write_trajectory(pd.DataFrame(state["rows"]), state["meta"], out_path)
        return state["meta"]

    subset, val = split_indices(len(data.y_train), cell["data"]["val_size"],
                                cell["data"]["split_seed"], cell["P"], cell["seed"])
    subset_t = torch.from_numpy(subset).to(device)
    x_sub, y_sub = data.x_train[subset_t], data.y_train[subset_t]
    val_t = torch.from_numpy(val).to(device)
    x_val, y_val = data.x_train[val_t], data.y_train[val_t]

    torch.manual_seed(stream_seed(cell["seed"], STREAM_INIT))
    model = build_model(cell["arch"], cell["dataset"], training["init_scale"]).to(device)
    optimizer = make_optimizer(model, training)
    tracker = ComplexityTracker(model)

    P, batch = cell["P"], training["batch_size"]
    steps_per_epoch = math.ceil(P / batch)
    total = training["epochs"] * steps_per_epoch
    evals = eval_steps(total, training["eval_points"])
    rows, step, wall, diverged_step = [], 0, 0.0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        tracker.load_state_dict(state["tracker"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        rows, step, wall = state["rows"], state["step"], state["wall_time"]
        log(f"{cid}: resuming at step {step}/{total} from {ckpt_path}")

    def record(at_step):
        train_err, train_loss = evaluate(model, x_sub, y_sub)
        val_err, val_loss = evaluate(model, x_val, y_val)
        test_err, test_loss = evaluate(model, data.x_test, data.y_test)
        measures = tracker.compute()
        rows.append({"step": int(at_step), "epoch": at_step / steps_per_epoch, "wall_time": wall,
                     "train_error": train_err, "train_loss": train_loss, "val_error": val_err,
                     "val_loss": val_loss, "test_error": test_err, "test_loss": test_loss,
                     "lambda": measures[training["measure"]], **measures})
        log(f"{cid}: step {at_step}/{total} epoch {at_step / steps_per_epoch:.1f} "
            f"train_err {train_err:.4f} test_err {test_err:.4f} λ {rows[-1]['lambda']:.4g}")

    def save_checkpoint(done=False, meta=None):
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        payload = {"config_hash": chash, "done": done, "rows": rows, "step": step,
                   "wall_time": wall, "meta": meta}
        if not done:
            payload.update(model=model.state_dict(), optimizer=optimizer.state_dict(),
                           tracker=tracker.state_dict(), torch_rng=torch.get_rng_state(),
                           cuda_rng=cuda_rng)
        _save_checkpoint(ckpt_path, payload)

    if step == 0 and not rows:
        record(0)
    pending = [int(s) for s in evals if s > step]
    last_ckpt = time.monotonic()
    model.train()
    perm, perm_epoch = None, -1
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    for target in pending:
        t0 = time.perf_counter()
        while step < target:
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm = torch.from_numpy(np.random.default_rng(
                    stream_seed(cell["seed"], STREAM_ORDER, epoch)).permutation(P)).to(device)
                perm_epoch = epoch
            idx = perm[pos * batch:(pos + 1) * batch]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_sub[idx]), y_sub[idx])
            loss.backward()
            optimizer.step()
            # no host sync per step: remember the first non-finite step on the device
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()),
                                    torch.full_like(first_bad, step + 1), first_bad)
            step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall += time.perf_counter() - t0
        if first_bad.item() >= 0:
            diverged_step = int(first_bad.item())
            log(f"{cid}: non-finite training loss at step {diverged_step}; stopping (diverged)")
            break
        record(step)
        if time.monotonic() - last_ckpt >= 60 * training["checkpoint_minutes"] and step < total:
            save_checkpoint()
            last_ckpt = time.monotonic()

    meta = provenance(config=cell, device=device)
    meta.update(cell_id=cid, status="diverged" if diverged_step is not None else "completed",
                diverged_step=diverged_step, dataset_sha256=data.sha256,
                n_params=sum(p.numel() for p in model.parameters()),
                steps_per_epoch=steps_per_epoch, total_steps=total,
                planned_eval_steps=[int(s) for s in evals])
    write_trajectory(pd.DataFrame(rows), meta, out_path)
    save_checkpoint(done=True, meta=meta)  # small: lets a rerun of this batch skip the cell
    return meta


def train_batch(cells: list[dict], data_path, out_dir, checkpoint_dir, device="auto",
                log=print) -> list[dict]:
    """Train cells (seeds of one arch/dataset/P) in this process; one Parquet per cell in out_dir."""
    if not cells:
        raise ValueError("no cells to train")
    datasets = {c["dataset"] for c in cells}
    if len(datasets) != 1:
        raise ValueError(f"one job trains one dataset; got {sorted(datasets)}")
    torch.use_deterministic_algorithms(True, warn_only=True)
    dev = resolve_device(device if device != "auto" else cells[0]["training"]["device"])
    data = DeviceData(load_canonical(data_path), dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metas = []
    for cell in cells:
        t0 = time.perf_counter()
        metas.append(train_cell(cell, data, out_dir / f"seed{cell['seed']}.parquet",
                                checkpoint_dir, dev, log))
        log(f"{cell_id(cell)}: {metas[-1]['status']} in {time.perf_counter() - t0:.1f} s")
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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = json.loads(args.cells)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    train_batch(cells, args.data, args.out, args.checkpoint_dir, args.device, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
