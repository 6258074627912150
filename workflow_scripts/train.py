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

Engines (``sequential``, ``vmap``, ``auto``; workflow_scripts.engines, where they and their options
are described): both run through one loop, ``run_cells``, which owns everything above
(checkpoints and resumption, schedule, batch order, recording, divergence, metadata); an engine
supplies only init, step, evaluate and its checkpoint state.

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

# cuBLAS is deterministic only with a fixed workspace; it must be set before CUDA initialises
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np
import pandas as pd
import torch

from . import augment
from .config import cell_id
from .datasets import load_canonical
from .engines import (ENGINES, PRECISIONS, STREAM_DATA, STREAM_ORDER, DeviceData, Engine, EngineOptions,
                      SequentialEngine, StackedEngine, checkpoint_path, choose_engine, same_but_seed,
                      stream_seed)
from .io import atomic_path, remove_stale_temporaries
from .provenance import config_hash, provenance
from .trajectory import write_trajectory


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


def use_deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its NaN fill of every
    newly allocated output (a guard against kernels that read memory they never wrote), which
    costs 4% of a CPU training run (MNIST CNN, ``torch.profiler``). Our results do not depend on
    it: the rerun and resume tests compare trajectories bit for bit."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


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


# ------------------------------------------------------------------------- the training loop
def run_cells(engine_cls: type[Engine], cells: list[dict], data: DeviceData, out_paths,
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
    evaluation points, measures, divergence rule and checkpoint contract; see
    workflow_scripts.engines for what differs.
    """
    opts = opts or EngineOptions()
    if not same_but_seed(cells):
        raise ValueError("the vmap engine stacks cells that differ only in their seed")
    if opts.channels_last:
        log("--channels-last is ignored by the vmap engine (stacked inputs are 5-D)")
    out_dir = Path(out_dir)
    return run_cells(StackedEngine, cells, data, [out_dir / f"seed{c['seed']}.parquet"
                                                  for c in cells], checkpoint_dir, device, log, opts)


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
