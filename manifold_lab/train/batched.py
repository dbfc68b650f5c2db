"""Seed-batched training: K runs of identical shapes trained as one stacked network.

``train_batch(members)`` trains the runs ``members = [(cfg, run_dir, seed), ...]`` together
(``manifold_lab.models.stacked``): each member keeps its own data order, augmentation,
subset, initialisation and dropout masks (all drawn from its own seed exactly as ``train``
draws them), the loss is ``sum_k CE_k`` (each member's mean cross-entropy over its batch),
so SGD with momentum and weight decay (or RMSProp, AdamW, an EMA) updates every member as
if it were trained alone. It returns each member's metrics as ``train`` does, and writes
into each member's own ``run_dir`` what ``train`` writes there: ``metrics.jsonl``,
``checkpoint.pt`` (the member's own, in ``train``'s format: a member's checkpoint resumes
alone with ``train``, and a run's checkpoint resumes inside a batch), ``relu_stats.json``,
``probe.json``, ``tensorboard/``.

Members may differ in their seed and in the activations of the model (``bottleneck_act``,
``bottleneck_act_blocks``, ``expand_act``, ``depthwise_act``: the arms of Figure 6a and of
the penalty-location study); everything else must be equal (``batch_key``). Refused: a
global gradient-norm clip (it would couple the members) and ``torchrun`` (one process).

Per step, members' batches ``(B, 3, H, W)`` are concatenated along channels into
``(B, 3 K, H, W)``; logits are ``(B, K, classes)``. Loss sums and correct counts are kept on
the device (one host synchronisation per epoch): a member whose loss turns non-finite is
marked ``diverged`` at the end of that epoch (its loss leaves the sum from that step on), and
the others go on. After a kill, members resume from their own checkpoints; members whose
checkpoints stand at different epochs are brought level by training the laggards first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from manifold_lab.models.stacked import (MemberDropout, load_stacked_state, member_optimizer_state, member_state,
                                         stack_models, stack_optimizer_state)
from manifold_lab.train.config import TrainConfig
from manifold_lab.train.ema import EMA
from manifold_lab.train.optim import build_optimizer, build_scheduler, param_groups
from manifold_lab.train.tensorboard_log import TensorBoardLog
from manifold_lab.train.trainer import Run, _autocast, epoch_progress, epoch_row, finish, full, prepare, save, setup

#: Model fields that may differ between the members of one batch (activations only: same shapes).
MEMBER_FIELDS = ("bottleneck_act", "bottleneck_act_blocks", "expand_act", "depthwise_act")


def batch_key(cfg: TrainConfig) -> str:
    """The configuration with the per-member fields left out: runs with equal keys can share a batch."""
    record = cfg.model_dump(mode="json")
    for field in MEMBER_FIELDS:
        record["model"].pop(field)
    return json.dumps(record, sort_keys=True)


def check_members(cfgs: list[TrainConfig]) -> None:
    """``ValueError`` unless the configurations can train as one batch (module docstring)."""
    if not cfgs:
        raise ValueError("a batch needs at least one run")
    first = json.loads(batch_key(cfgs[0]))
    for cfg in cfgs[1:]:
        other = json.loads(batch_key(cfg))
        for section, values in first.items():
            for key, value in values.items():
                if other[section].get(key) != value:
                    raise ValueError(f"runs of one batch must differ only in the seed and in "
                                     f"{', '.join('model.' + f for f in MEMBER_FIELDS)}; they differ in "
                                     f"{section}.{key} ({value!r} and {other[section].get(key)!r})")
    if cfgs[0].train.grad_clip:
        raise ValueError("train.grad_clip clips the global gradient norm, which would couple the members of a "
                         "batch; train these runs one by one (batch size 1) or drop grad_clip")


class _Engine:
    """The stacked network, optimizer, schedule and EMA of one group of members at one epoch."""

    def __init__(self, group: list[Run], device: torch.device):
        cfg = group[0].cfg
        self.group, self.cfg, self.device = group, cfg, device
        self.model = stack_models([r.model for r in group]).to(device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.steps_per_epoch = len(group[0].train_loader)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, cfg.train.epochs)
        self.ema = EMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        if all(r.state is not None for r in group):
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            self.optimizer.load_state_dict(stack_optimizer_state([r.state["optimizer"] for r in group], params))
            self.scheduler.load_state_dict(group[0].state["scheduler"])
            if self.ema is not None:
                load_stacked_state(self.ema.module, [r.state["ema"] for r in group])
        elif any(r.state is not None for r in group):
            raise RuntimeError("a group mixes resumed and fresh members at one epoch")  # train_batch never does
        self.dropouts = [m for m in self.model.modules() if isinstance(m, MemberDropout)]
        for m in self.dropouts:
            m.states = [_device_rng(r.rng, device) for r in group]
        self.net = torch.compile(self.model) if cfg.train.compile else self.model

    def train_epoch(self, epoch: int, bar) -> dict:
        """One epoch of every member; per member ``loss_sum``, ``correct``, ``seen``, ``alive`` and step losses.

        ``bar(batches, epoch)`` wraps the batches in a progress bar (``trainer.epoch_progress``)."""
        k, cfg, dev = len(self.group), self.cfg, self.device
        loaders = [r.train_loader for r in self.group]
        for loader in loaders:
            loader.set_epoch(epoch)
        self.net.train()
        loss_sum = torch.zeros(k, dtype=torch.float64, device=dev)
        correct = torch.zeros(k, dtype=torch.int64, device=dev)
        alive = torch.ones(k, dtype=torch.bool, device=dev)
        seen, step_losses, lrs = 0, [], []
        for batches in bar(zip(*loaders), epoch, total=self.steps_per_epoch):
            x = torch.cat([b[0].to(dev, non_blocking=True) for b in batches], dim=1)
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.stack([b[1].to(dev, non_blocking=True) for b in batches], dim=1)  # (B, K)
            with _autocast(cfg, dev):
                logits = self.net(x)  # (B, K, classes)
            losses = F.cross_entropy(full(logits).flatten(0, 1), y.flatten(), reduction="none",
                                     label_smoothing=cfg.train.label_smoothing).view(y.shape).mean(0)
            alive &= torch.isfinite(losses)
            losses = torch.where(alive, losses, torch.zeros_like(losses))
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            loss_sum += losses.double() * y.shape[0]
            correct += (logits.argmax(-1) == y).sum(0)
            seen += y.shape[0]
            step_losses.append(losses.detach())
            lrs.append(self.optimizer.param_groups[0]["lr"])
        return {"loss_sum": loss_sum.tolist(), "correct": correct.tolist(), "seen": seen,
                "alive": alive.tolist(), "step_losses": torch.stack(step_losses).tolist() if step_losses else [],
                "lrs": lrs}

    @torch.no_grad()
    def evaluate(self, batches, n: int) -> tuple[list[float], list[float]]:
        """Per member (loss, accuracy) over ``batches`` of ``(x, y)`` lists (one entry per member), ``n`` images."""
        model = self.ema.module if self.ema is not None else self.net
        model.eval()
        k, dev = len(self.group), self.device
        loss_sum = torch.zeros(k, dtype=torch.float64, device=dev)
        correct = torch.zeros(k, dtype=torch.int64, device=dev)
        for xs, ys in batches:
            x = torch.cat([t.to(dev) for t in xs], dim=1)
            y = torch.stack([t.to(dev) for t in ys], dim=1)
            with _autocast(self.cfg, dev):
                logits = model(x)
            loss_sum += F.cross_entropy(full(logits).flatten(0, 1), y.flatten(), reduction="none") \
                .view(y.shape).double().sum(0)
            correct += (logits.argmax(-1) == y).sum(0)
        return (loss_sum / max(n, 1)).tolist(), (correct.double() / max(n, 1)).tolist()

    def test(self):
        loaders = [r.test_loader for r in self.group]
        n = len(loaders[0].labels)
        return self.evaluate(((list(xs), list(ys)) for xs, ys in
                              (zip(*batches) for batches in zip(*loaders))), n)

    def clean(self):
        if self.group[0].clean is None:
            return None
        step = self.cfg.data.eval_batch_size or self.cfg.data.batch_size
        n = len(self.group[0].clean[1])
        chunks = (([r.clean[0][i:i + step] for r in self.group], [r.clean[1][i:i + step] for r in self.group])
                  for i in range(0, n, step))
        return self.evaluate(chunks, n)

    def unstack(self, i: int) -> tuple[dict, dict, dict, dict | None, dict]:
        """Member ``i``'s model, optimizer, scheduler and EMA state dicts and generator states."""
        run = self.group[i]
        like = run.model.state_dict()
        model = member_state(self.model.state_dict(), i, like)
        params = [p for g in param_groups(run.model, self.cfg.optim.weight_decay, self.cfg.optim.decay_bn_and_bias)
                  for p in g["params"]]
        optimizer = member_optimizer_state(self.optimizer.state_dict(), i, params)
        ema = member_state(self.ema.module.state_dict(), i, like) if self.ema is not None else None
        rng = dict(run.rng)
        if self.dropouts and self.dropouts[0].states[i] is not None:
            rng = _with_device_rng(rng, self.dropouts[0].states[i], self.device)
        return model, optimizer, self.scheduler.state_dict(), ema, rng


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _device_rng(rng: dict, device: torch.device) -> torch.Tensor:
    """The generator state dropout draws from on ``device`` in a run whose global state is ``rng``."""
    return rng["cuda"][_cuda_index(device)] if device.type == "cuda" else rng["torch"]


def _with_device_rng(rng: dict, state: torch.Tensor, device: torch.device) -> dict:
    out = dict(rng)
    if device.type == "cuda":
        out["cuda"] = list(out["cuda"])
        out["cuda"][_cuda_index(device)] = state
    else:
        out["torch"] = state
    return out


def train_batch(members: list[tuple[TrainConfig, str | Path, int]], *, resume: bool = True, progress: bool = True,
                log=None) -> list[dict]:
    """Train ``members`` (``(cfg, run_dir, seed)`` each) as one stacked network; their metrics, in order.

    ``log``: one logger for every member, or a list with one per member (each member's lines go to its own).
    """
    logs = list(log) if isinstance(log, (list, tuple)) else [log] * len(members)
    says = [lg.info if lg is not None else (lambda *a: None) for lg in logs]
    cfgs = [m[0] for m in members]
    check_members(cfgs)
    d = setup(cfgs[0])
    if d.enabled:
        raise ValueError("seed-batched training runs in one process; under torchrun train the runs one by one")
    runs = [prepare(cfg, run_dir, seed, d, resume=resume, say=say)
            for (cfg, run_dir, seed), say in zip(members, says)]
    cfg = cfgs[0]
    steps_per_epoch = len(runs[0].train_loader)
    for run in runs:
        run.tb = TensorBoardLog.open(run.run_dir, run.epoch * steps_per_epoch, run.say)
        if run.history and run.history[-1].get("status") == "diverged":
            run.status = "diverged"
    engine = None
    steps, bar = epoch_progress(cfg, min(r.epoch for r in runs), progress)
    while True:
        active = [r for r in runs if r.status == "done" and r.epoch < cfg.train.epochs]
        if not active:
            break
        epoch = min(r.epoch for r in active)
        group = [r for r in active if r.epoch == epoch]
        if engine is None or [id(r) for r in engine.group] != [id(r) for r in group]:
            engine = _Engine(group, d.device)
        start = time.perf_counter()
        result = engine.train_epoch(epoch, bar)
        seconds = time.perf_counter() - start
        test_loss, test_acc = engine.test()
        clean = engine.clean()
        for i, run in enumerate(group):
            step = epoch * steps_per_epoch
            if run.tb is not None:
                for j, (losses, lr) in enumerate(zip(result["step_losses"], result["lrs"])):
                    if result["alive"][i]:
                        run.tb.step(step + j + 1, losses[i], lr)
            if not result["alive"][i]:
                run.status = "diverged"
                run.history.append({"epoch": epoch + 1, "status": "diverged"})
                run.say(f"epoch {epoch + 1}: loss is not finite; stopping (diverged)")
                continue
            row = epoch_row(epoch, result["loss_sum"][i], result["correct"][i], result["seen"], seconds,
                            (test_loss[i], test_acc[i]), engine.optimizer.param_groups[0]["lr"],
                            (clean[0][i], clean[1][i]) if clean is not None else None)
            run.history.append(row)
            run.epoch = epoch + 1
            run.say(json.dumps(row))
            if run.tb is not None:
                run.tb.epoch(step + steps_per_epoch, row)
            model_state, optimizer_state, scheduler_state, ema_state, rng = engine.unstack(i)
            run.model.load_state_dict(model_state)
            run.rng = rng
            run.state = {"optimizer": optimizer_state, "scheduler": scheduler_state, "ema": ema_state}
            save(run, model_state, optimizer_state, scheduler_state, ema_state, rng)
        if any(r.status == "diverged" for r in group):
            engine = None  # restack without the diverged members
        steps(epoch + 1)
    outs = []
    for run in runs:
        final = run.model
        if cfg.train.ema_decay and run.state is not None and run.state.get("ema") is not None:
            final = EMA(run.model, cfg.train.ema_decay).module
            final.load_state_dict(run.state["ema"])
        outs.append(finish(run, final, d, n_params=sum(p.numel() for p in run.model.parameters()),
                           shortcuts=run.model.num_shortcuts, step=run.epoch * steps_per_epoch))
    return outs
