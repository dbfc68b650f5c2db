"""Train one MobileNetV2 from a ``TrainConfig``: the loop, evaluation, resume, divergence.

``train(cfg, run_dir, seed=...)`` writes into ``run_dir`` (rank 0 only):

- ``checkpoint.pt`` after every epoch (atomic; exact resume at epoch boundaries);
- ``metrics.jsonl``: one line per epoch (train/test loss and accuracy, lr, images/s, time);
- ``relu_stats.json``: Figure 7 statistics at step 0 and at the end.

It returns the final metrics: ``test_acc``, ``test_loss``, ``train_acc``,
``train_loss``, ``best_test_acc``, ``epochs``, ``params``, per-epoch curves
(``curve_test_acc`` ...) and ``status`` (``done`` or ``diverged``, the latter
when a loss is NaN or infinite). Accuracies are fractions in [0, 1].
Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank
reads its shard, and sums are all-reduced, so metrics are over the whole data.
"""

from __future__ import annotations

import contextlib
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
from manifold_lab.train.relu_stats import relu_stats

CHECKPOINT = "checkpoint.pt"


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int) -> nn.Module:
    from manifold_lab.models import mobilenet_v2

    m = cfg.model
    return mobilenet_v2(
        m.preset, num_classes=num_classes, in_channels=in_channels, width_mult=m.width_mult,
        bottleneck_act=m.bottleneck_act, shortcut=m.shortcut, expand_ratio=m.expand_ratio,
        expand_act=m.expand_act, depthwise_act=m.depthwise_act, dropout=m.dropout,
    )


def _autocast(cfg: TrainConfig, device: torch.device):
    if cfg.train.bf16 and (device.type == "cpu" or torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], d)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _fixed_images(loader, n: int, device) -> torch.Tensor:
    loader.set_epoch(0)
    parts, total = [], 0
    for x, _ in loader:
        parts.append(x)
        total += len(x)
        if total >= n:
            break
    return torch.cat(parts)[:n].to(device)


def _write_history(run_dir: Path, history: list[dict]) -> None:
    """``metrics.jsonl``: one JSON line per epoch of ``history`` (rewritten whole, atomically)."""
    io.write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def train(cfg: TrainConfig, run_dir: str | Path, *, seed: int = 0, resume: bool = True, progress: bool = True,
          log=None) -> dict:
    """Train and evaluate; see the module docstring for files and metrics."""
    from tqdm import tqdm

    from manifold_lab.data import build_loaders

    run_dir = Path(run_dir)
    say = log.info if log is not None else (lambda *a: None)
    d = distributed.init(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)

    data_cfg = cfg.data.model_dump()
    train_loader, test_loader, num_classes, in_channels = build_loaders(
        data_cfg, device=d.device, seed=seed, rank=d.rank, world_size=d.world_size,
        channels_last=cfg.train.channels_last)
    model = build_model(cfg, num_classes, in_channels)
    sample = _fixed_images(test_loader, min(cfg.train.relu_stats_images, 10**9), "cpu")
    model.check_resolution(min(sample.shape[-2:]))
    model.to(d.device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, cfg.optim)
    steps_per_epoch = len(train_loader)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch, cfg.train.epochs)
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
    net = nn.parallel.DistributedDataParallel(model) if d.enabled else model
    if cfg.train.compile:
        net = torch.compile(net)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

    ckpt_path = run_dir / CHECKPOINT
    config_record = {"config": cfg.model_dump(mode="json"), "seed": seed}
    history: list[dict] = []
    start_epoch = 0
    stats: dict = {}
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        if {k: state.get(k) for k in config_record} != config_record:
            raise ValueError(f"checkpoint {ckpt_path} was written for a different config or seed; "
                             f"delete it or train with --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        history, start_epoch, stats = list(state["history"]), int(state["epoch"]), dict(state.get("relu_stats") or {})
        say(f"resumed from {ckpt_path} at epoch {start_epoch}")
        if d.is_main:  # a kill between the checkpoint and the log left the log an epoch short
            _write_history(run_dir, history)
    if d.is_main and cfg.train.relu_stats and "step0" not in stats:
        stats["step0"] = relu_stats(model, sample.to(d.device))

    status = "done"
    for epoch in range(start_epoch, cfg.train.epochs):
        net.train()
        train_loader.set_epoch(epoch)
        loss_sum = correct = seen = 0.0
        start = time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
                   disable=not (progress and d.is_main), unit="batch")
        for x, y in bar:
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            with _autocast(cfg, d.device):
                logits = net(x)
                loss = criterion(logits.float(), y)
            if not torch.isfinite(loss):
                status = "diverged"
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
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{seen * d.world_size / (time.perf_counter() - start):.0f}")
        flags = distributed.all_reduce_sum([1.0 if status == "diverged" else 0.0], d)
        if flags[0] > 0:
            status = "diverged"
            history.append({"epoch": epoch + 1, "status": "diverged"})
            say(f"epoch {epoch + 1}: loss is not finite; stopping (diverged)")
            break
        loss_sum, correct, seen = distributed.all_reduce_sum([loss_sum, correct, seen], d)
        seconds = time.perf_counter() - start
        test_loss, test_acc = evaluate(ema.module if ema is not None else net, test_loader, cfg, d)
        row = {
            "epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
            "test_loss": test_loss, "test_acc": test_acc, "lr": optimizer.param_groups[0]["lr"],
            "images_per_s": seen / seconds, "seconds": seconds,
        }
        history.append(row)
        say(json.dumps(row))
        if d.is_main:
            if cfg.train.checkpoint:
                save_checkpoint(ckpt_path, {
                    **config_record, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None, "rng": rng_state(),
                    "history": history, "relu_stats": stats,
                })
            _write_history(run_dir, history)
        distributed.barrier(d)

    if d.is_main and cfg.train.relu_stats and status == "done":
        stats["final"] = relu_stats(ema.module if ema is not None else model, sample.to(d.device))
        io.write_json(run_dir / "relu_stats.json", stats)
    if d.is_main and status == "diverged":
        _write_history(run_dir, history)
    distributed.shutdown(d)

    done = [r for r in history if "test_acc" in r]
    out = {"status": status, "epochs": len(done), "params": n_params}
    if done:
        last = done[-1]
        out.update({k: last[k] for k in ("test_acc", "test_loss", "train_acc", "train_loss")})
        out["best_test_acc"] = max(r["test_acc"] for r in done)
        out["images_per_s"] = float(sum(r["images_per_s"] for r in done) / len(done))
        for k in ("test_acc", "test_loss", "train_acc", "train_loss"):
            out[f"curve_{k}"] = [r[k] for r in done]
    if status == "diverged":
        out = {k: v for k, v in out.items() if not (isinstance(v, float) and not math.isfinite(v))}
    return out
