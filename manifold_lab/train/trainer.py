"""Train one MobileNetV2 from a ``TrainConfig``: the loop, evaluation, resume, divergence.

``train(cfg, run_dir, seed=...)`` writes into ``run_dir`` (rank 0 only):

- ``checkpoint.pt`` after every epoch (atomic; exact resume at epoch boundaries);
- ``metrics.jsonl``: one line per epoch (train/test loss and accuracy, lr, images/s, time; with
  ``train.clean_train_images`` also ``clean_train_loss`` / ``clean_train_acc``: a fixed class-balanced
  set of training images scored in eval mode without augmentation);
- ``relu_stats.json``: Figure 7 statistics at step 0 (running statistics of a calibration pass) and
  at the end (running statistics), on a class-balanced test sample whose class histogram it records
  (``manifold_lab.train.relu_stats``, ``manifold_lab.data.sample``);
- ``probe.json``: the information-loss probe (``manifold_lab.probe``, bounded by
  ``RUN_PROBE``) at step 0 and at the end, per block, with ``train.relu_stats``; in eval mode,
  so with batch-norm running statistics (at step 0 the fresh ones: each BN is the identity);
- ``tensorboard/``: event files (per-step and per-epoch scalars, hyper-parameters with
  the final metrics) when ``tensorboard`` is installed (``manifold_lab.train.tensorboard_log``).

It returns the final metrics: ``test_acc``, ``test_loss``, ``train_acc``,
``train_loss``, ``best_test_acc``, ``epochs``, ``params``, ``shortcuts`` (residual additions
of the network, ``MobileNetV2.num_shortcuts``), per-epoch curves
(``curve_test_acc`` ...), the probe summary ``probe_step0_<key>`` and
``probe_final_<key>`` (``manifold_lab.probe.SUMMARY_KEYS``) and ``status`` (``done`` or ``diverged``, the latter
when a loss is NaN or infinite). Accuracies are fractions in [0, 1].
Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank
reads its shard, and sums are all-reduced, so metrics are over the whole data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from manifold_lab import io
from manifold_lab.train import distributed
from manifold_lab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from manifold_lab.train.config import TrainConfig
from manifold_lab.train.ema import EMA
from manifold_lab.train.optim import build_optimizer, build_scheduler
from manifold_lab.data.sample import balanced_sample, per_class_count
from manifold_lab.train.relu_stats import FINAL_BN, relu_stats, step0_stats
from manifold_lab.train.tensorboard_log import TensorBoardLog

CHECKPOINT = "checkpoint.pt"


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> nn.Module:
    from manifold_lab.models import mobilenet_v2

    m = cfg.model
    return mobilenet_v2(
        m.preset, num_classes=num_classes, in_channels=in_channels, width_mult=m.width_mult,
        bottleneck_act=m.bottleneck_act, shortcut=m.shortcut, expand_ratio=m.expand_ratio,
        expand_act=m.expand_act, depthwise_act=m.depthwise_act, dropout=m.dropout,
        bottleneck_mult=m.bottleneck_mult, bottleneck_act_blocks=m.bottleneck_act_blocks,
    )


def initial_model(cfg: TrainConfig, seed: int, num_classes: int, in_channels: int) -> nn.Module:
    """The network at step 0: ``build_model`` right after ``torch.manual_seed(seed)``.

    ``train`` builds its model this way, so the information-loss probe
    (``manifold_lab.probe.sources``) rebuilds any run's step-0 network exactly
    from its config and seed.
    """
    torch.manual_seed(seed)
    return build_model(cfg, num_classes, in_channels)


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.train.bf16 and (device.type == "cpu" or torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 for the loss (bf16 autocast gives bf16; float64 stays float64)."""
    return logits if logits.dtype == torch.float64 else logits.float()


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: TrainConfig, d: distributed.Dist) -> tuple[float, float]:
    """(loss, accuracy) over the whole test set, counting each image once across ranks."""
    model.eval()
    loss_sum = correct = seen = 0.0
    valid_left = getattr(loader, "num_valid", None)
    for x, y in loader:
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if valid_left is not None:  # drop the padding that evens out the shards
            x, y = x[: max(0, valid_left)], y[: max(0, valid_left)]
            valid_left -= len(y)
            if len(y) == 0:
                continue
        with _autocast(cfg, d.device):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(full(logits), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], d)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _probe(model: nn.Module, loader) -> dict | None:
    """The per-run information-loss probe on the test split (``probe.network.run_probe``); None when the
    loader streams its images from disk (no resident test split to draw from) or the network has no
    inverted-residual block (the probe's measures are defined on them; ``shortcut="sandglass"``)."""
    from manifold_lab.models import InvertedResidual

    if not (hasattr(loader, "images") and hasattr(loader, "labels")) \
            or not any(isinstance(m, InvertedResidual) for m in model.modules()):
        return None
    from manifold_lab.probe.network import run_probe

    return run_probe(model, loader.images, loader.labels.cpu().numpy(), transform=loader.normalize)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, device) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` in eval mode on a fixed tensor batch, in chunks of the eval batch size."""
    was_training = model.training
    model.eval()
    step = cfg.data.eval_batch_size or cfg.data.batch_size
    loss_sum = correct = 0.0
    try:
        for i in range(0, len(y), step):
            xb, yb = x[i:i + step].to(device), y[i:i + step].to(device)
            with _autocast(cfg, device):
                logits = model(xb)
            loss_sum += nn.functional.cross_entropy(full(logits), yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    finally:
        model.train(was_training)
    return loss_sum / len(y), correct / len(y)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    """``metrics.jsonl``: one JSON line per epoch of ``history`` (rewritten whole, atomically)."""
    io.write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


@dataclasses.dataclass
class Run:
    """One run's data, step-0 network and bookkeeping, as ``prepare`` leaves it before the first step.

    ``state`` is the loaded checkpoint (None for a fresh start); ``history``, ``epoch``, ``stats``
    (Figure 7) and ``probe`` continue from it. ``rng`` is the global generator state at the first
    step (``checkpoint.rng_state``): the state dropout draws from.
    """

    cfg: TrainConfig
    run_dir: Path
    seed: int
    train_loader: object
    test_loader: object
    model: nn.Module
    sample: torch.Tensor
    clean: tuple | None
    config_record: dict
    state: dict | None = None
    history: list = dataclasses.field(default_factory=list)
    epoch: int = 0
    stats: dict = dataclasses.field(default_factory=dict)
    probe: dict = dataclasses.field(default_factory=dict)
    rng: dict | None = None
    status: str = "done"
    tb: object = None
    say: object = None

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT


def prepare(cfg: TrainConfig, run_dir: str | Path, seed: int, d: distributed.Dist, *, resume: bool = True,
            say=lambda *a: None) -> Run:
    """Data, the step-0 network (or the checkpoint's), the Figure 7 sample and the step-0 statistics of one run.

    The order of every draw from the global generator is the same for a run trained alone
    (``train``) and as a member of a batch (``manifold_lab.train.batched``), so both start their
    first step from the same state.
    """
    from manifold_lab.data import build_loaders

    run_dir = Path(run_dir)
    torch.manual_seed(seed)
    train_loader, test_loader, num_classes, in_channels = build_loaders(
        cfg.data.model_dump(), device=d.device, seed=seed, rank=d.rank, world_size=d.world_size,
        channels_last=cfg.train.channels_last)
    model = initial_model(cfg, seed, num_classes, in_channels)
    per_class = per_class_count(cfg.train.relu_stats_images, num_classes, "train.relu_stats_images")
    sample, _, histogram = balanced_sample(test_loader, per_class)
    sample_record = {"split": "test", "per_class": per_class, "images": len(sample), "histogram": histogram,
                     "bn": {"final": FINAL_BN}}
    clean = None
    if cfg.train.clean_train_images:
        clean = balanced_sample(train_loader, per_class_count(cfg.train.clean_train_images, num_classes,
                                                              "train.clean_train_images"))[:2]
    model.check_resolution(min(sample.shape[-2:]))
    model.to(d.device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    run = Run(cfg, run_dir, seed, train_loader, test_loader, model, sample, clean,
              {"config": cfg.model_dump(mode="json"), "seed": seed}, say=say)
    if resume and run.ckpt_path.exists():
        state = load_checkpoint(run.ckpt_path)
        if {k: state.get(k) for k in run.config_record} != run.config_record:
            raise ValueError(f"checkpoint {run.ckpt_path} was written for a different config or seed; "
                             f"delete it or train with --no-resume")
        model.load_state_dict(state["model"])
        set_rng_state(state["rng"])
        run.state = state
        run.history, run.epoch = list(state["history"]), int(state["epoch"])
        run.stats, run.probe = dict(state.get("relu_stats") or {}), dict(state.get("probe") or {})
        say(f"resumed from {run.ckpt_path} at epoch {run.epoch}")
        if d.is_main:  # a kill between the checkpoint and the log left the log an epoch short
            _write_history(run_dir, run.history)
    if d.is_main and cfg.train.relu_stats and "step0" not in run.stats:
        run.stats["sample"] = sample_record
        run.stats["step0"], run.stats["sample"]["bn"]["step0"] = step0_stats(model, sample.to(d.device),
                                                                            train_loader, per_class)
    if d.is_main and cfg.train.relu_stats and "step0" not in run.probe:
        if run.epoch == 0:
            run.probe["step0"] = _probe(model, test_loader)
        else:  # a checkpoint from before the probe: rebuild step 0, leaving the resumed RNG state alone
            with torch.random.fork_rng(devices=[]):
                run.probe["step0"] = _probe(initial_model(cfg, seed, num_classes, in_channels).to(d.device),
                                            test_loader)
    run.rng = rng_state()
    return run


def epoch_row(epoch: int, loss_sum: float, correct: float, seen: float, seconds: float, test: tuple, lr: float,
              clean: tuple | None) -> dict:
    """One line of ``metrics.jsonl``."""
    row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
           "test_loss": test[0], "test_acc": test[1], "lr": lr, "images_per_s": seen / seconds, "seconds": seconds}
    if clean is not None:
        row["clean_train_loss"], row["clean_train_acc"] = clean
    return row


def save(run: Run, model_state: dict, optimizer_state: dict, scheduler_state: dict, ema_state: dict | None,
         rng: dict) -> None:
    """``checkpoint.pt`` after ``run.epoch`` epochs (if ``train.checkpoint``) and ``metrics.jsonl``."""
    if run.cfg.train.checkpoint:
        save_checkpoint(run.ckpt_path, {
            **run.config_record, "epoch": run.epoch, "model": model_state, "optimizer": optimizer_state,
            "scheduler": scheduler_state, "ema": ema_state, "rng": rng, "history": run.history,
            "relu_stats": run.stats, "probe": run.probe,
        })
    _write_history(run.run_dir, run.history)


def finish(run: Run, final_model: nn.Module, d: distributed.Dist, *, n_params: int, shortcuts: int,
           step: int) -> dict:
    """Final Figure 7 statistics and probe (a finished run), and the run's metrics (module docstring)."""
    status, history, stats, probe = run.status, run.history, run.stats, run.probe
    if d.is_main and run.cfg.train.relu_stats and status == "done":
        stats["final"] = relu_stats(final_model, run.sample.to(d.device), bn="running")
        io.write_json(run.run_dir / "relu_stats.json", stats)
        probe["final"] = _probe(final_model, run.test_loader)
        if probe["final"] is not None:
            io.write_json(run.run_dir / "probe.json", probe)
    if d.is_main and status == "diverged":
        _write_history(run.run_dir, history)
    done = [r for r in history if "test_acc" in r]
    out = {"status": status, "epochs": len(done), "params": n_params, "shortcuts": int(shortcuts)}
    if done:
        last = done[-1]
        out.update({k: last[k] for k in ("test_acc", "test_loss", "train_acc", "train_loss")})
        out["best_test_acc"] = max(r["test_acc"] for r in done)
        out["images_per_s"] = float(sum(r["images_per_s"] for r in done) / len(done))
        for k in ("test_acc", "test_loss", "train_acc", "train_loss", "clean_train_acc", "clean_train_loss"):
            if k in last:
                out[f"curve_{k}"] = [r[k] for r in done]
        for k in ("clean_train_acc", "clean_train_loss"):
            if k in last:
                out[k] = last[k]
    for stage in ("step0", "final"):
        if (probe.get(stage) or {}).get("summary") and status == "done":
            out.update({f"probe_{stage}_{k}": v for k, v in probe[stage]["summary"].items()})
    if status == "diverged":
        out = {k: v for k, v in out.items() if not (isinstance(v, float) and not math.isfinite(v))}
    if run.tb is not None:
        run.tb.hparams(step, run.config_record["config"], run.seed, out)
        run.tb.close()
    return out


def setup(cfg: TrainConfig) -> distributed.Dist:
    """The process group (under torchrun) and the torch switches of ``train``."""
    d = distributed.init(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return d


def epoch_progress(cfg: TrainConfig, done: int, show: bool):
    """``(steps, bar)`` of a training from epoch ``done`` on the main rank: ``steps(epoch)`` after each epoch
    (``manifold_lab.train.steps.Steps``: the runner's note in a worker; a plain line on stderr when
    ``show`` and stderr is not a terminal) and ``bar(loader, epoch)``, the loader wrapped in a tqdm bar of its
    batches, drawn only when ``show`` and stderr is a terminal."""
    import sys

    from tqdm import tqdm

    from manifold_lab.train.steps import Steps

    steps = Steps(cfg.train.epochs, done, quiet=not show)
    tty = show and sys.stderr.isatty()
    return steps, lambda loader, epoch, **kw: tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                                                   leave=False, disable=not tty, unit="batch", **kw)


def train(cfg: TrainConfig, run_dir: str | Path, *, seed: int = 0, resume: bool = True, progress: bool = True,
          log=None) -> dict:
    """Train and evaluate; see the module docstring for files and metrics.

    ``progress``: a bar per epoch on a terminal (stderr), a plain line per epoch elsewhere, or the runner's
    progress note inside ``manifold-lab run`` (``manifold_lab.train.steps.Steps``); False: neither.
    """
    say = log.info if log is not None else (lambda *a: None)
    d = setup(cfg)
    run = prepare(cfg, run_dir, seed, d, resume=resume, say=say)
    model, train_loader, test_loader = run.model, run.train_loader, run.test_loader
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = len(train_loader)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch, cfg.train.epochs)
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    if run.state is not None:
        optimizer.load_state_dict(run.state["optimizer"])
        scheduler.load_state_dict(run.state["scheduler"])
        if ema is not None:
            ema.load_state_dict(run.state["ema"])
    net = nn.parallel.DistributedDataParallel(model) if d.enabled else model
    if cfg.train.compile:
        net = torch.compile(net)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

    tb = run.tb = TensorBoardLog.open(run.run_dir, run.epoch * steps_per_epoch, say) if d.is_main else None
    step = run.epoch * steps_per_epoch
    steps, bar = epoch_progress(cfg, run.epoch, progress and d.is_main)
    steps = steps if d.is_main else (lambda epoch: None)
    for epoch in range(run.epoch, cfg.train.epochs):
        net.train()
        train_loader.set_epoch(epoch)
        loss_sum = correct = seen = 0.0
        start = time.perf_counter()
        batches = bar(train_loader, epoch)
        for x, y in batches:
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            with _autocast(cfg, d.device):
                logits = net(x)
                loss = criterion(full(logits), y)
            if not torch.isfinite(loss):
                run.status = "diverged"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            step += 1
            if tb is not None:
                tb.step(step, loss.item(), optimizer.param_groups[0]["lr"])
            batches.set_postfix(loss=f"{loss.item():.3f}",
                                img_s=f"{seen * d.world_size / (time.perf_counter() - start):.0f}")
        if distributed.all_reduce_sum([1.0 if run.status == "diverged" else 0.0], d)[0] > 0:
            run.status = "diverged"
            run.history.append({"epoch": epoch + 1, "status": "diverged"})
            say(f"epoch {epoch + 1}: loss is not finite; stopping (diverged)")
            break
        loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], d)
        seconds = time.perf_counter() - start
        evaluated = ema.module if ema is not None else net
        clean = score(ema.module if ema is not None else model, *run.clean, cfg, d.device) if run.clean else None
        row = epoch_row(epoch, loss_sum, correct, seen, seconds, evaluate(evaluated, test_loader, cfg, d),
                        optimizer.param_groups[0]["lr"], clean)
        run.history.append(row)
        run.epoch = epoch + 1
        say(json.dumps(row))
        if tb is not None:
            tb.epoch(step, row)
        if d.is_main:
            save(run, model.state_dict(), optimizer.state_dict(), scheduler.state_dict(),
                 ema.state_dict() if ema is not None else None, rng_state())
        steps(run.epoch)
        distributed.barrier(d)

    out = finish(run, ema.module if ema is not None else model, d, n_params=n_params,
                 shortcuts=model.num_shortcuts, step=step)
    distributed.shutdown(d)
    return out
