"""Experiment kind ``mobilenetv2``: train one MobileNetV2 per run (``manifold_lab.train``).

Params are ``manifold_lab.train.TrainConfig`` (model / data / optim / schedule /
train). Metrics: final ``test_acc`` (fraction), ``test_loss``, ``train_acc``,
``best_test_acc``, ``params``, ``shortcuts``, per-epoch curves ``curve_*``, and the information-loss
probe summary at step 0 and at the end, ``probe_step0_*`` / ``probe_final_*``
(``manifold_lab.probe``; per block in the run's ``probe.json``). The report draws
Figure 6-style accuracy-vs-epoch curves per variant (mean over seeds with a
min-max band), a plateau table (test-accuracy gain over the last epochs), the
parameters and shortcut count of every variant, and the Figure 7 plot and table
of positive channels per ReLU layer (``manifold_lab.train.relu_stats``), measured as
the claim table's Figure 7 row does (``manifold_lab.train.figure7``: today's thresholds,
step 0 only where it was measured as the trained network is). A study that sweeps
``model.bottleneck_act_blocks`` over single blocks (``block_N``) against ``none`` also gets the
penalty of each block with its branch loss (``manifold_lab.kinds.block_penalty``).
"""

from __future__ import annotations

import math

from manifold_lab.io import md_cell
from manifold_lab.kinds import Kind, ReportContext, ReportItem, RunContext
from manifold_lab.train.config import TrainConfig


#: Train images of the datasets whose size is known without reading them (imagefolder: unknown).
TRAIN_IMAGES = {"digits": 1437, "cifar10": 50_000, "cifar10_jpeg": 50_000, "cifar100": 50_000}
CLASSES = {"digits": 10, "cifar10": 10, "cifar10_jpeg": 10, "cifar100": 100}
#: The smallest class of each split (images), where known without reading the data.
MIN_PER_CLASS = {"digits": (139, 35), "cifar10": (5000, 1000), "cifar10_jpeg": (5000, 1000), "cifar100": (500, 100)}
#: Native image side of the datasets (digits are 8 x 8 unless ``image_size`` upscales them).
NATIVE_SIZE = {"digits": 8, "cifar10": 32, "cifar10_jpeg": 32, "cifar100": 32}
#: Largest in-memory copy of the digits upscaled to ``image_size`` (all images, uint8).
MAX_DATA_BYTES = 2 << 30


def check_device(name: str) -> None:
    """Raise ValueError unless ``train.device`` names a device present here (auto, cpu, cuda, cuda:N)."""
    if name in ("auto", "cpu"):
        return
    head, _, index = name.partition(":")
    if head != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"train.device={name!r} is not one of auto, cpu, cuda, cuda:N")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"train.device={name!r} but CUDA is not available here; use auto or cpu")
    if index and int(index) >= count:
        raise ValueError(f"train.device={name!r} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")


def check(params: TrainConfig) -> None:
    """What the schema alone cannot refuse: a device not present, a batch larger than the
    train images (no batch per epoch), a class-balanced sample smaller than the classes,
    digits upscaled beyond ``MAX_DATA_BYTES`` in memory."""
    d = params.data
    check_device(params.train.device)
    total = TRAIN_IMAGES.get(d.name)
    if total is not None:
        images = total if d.subset is None else min(total, d.subset * CLASSES[d.name])
        if d.batch_size > images:
            raise ValueError(f"data.batch_size={d.batch_size} is larger than the {images} train images of "
                             f"{d.name}{f' (subset {d.subset} per class)' if d.subset else ''}: no batch per epoch; "
                             f"use a batch_size <= {images}")
    _check_samples(params)
    _check_resolution(params)
    from manifold_lab.models.mobilenetv2 import architecture  # block_N: N within the network's blocks

    architecture(bottleneck_act="relu6", bottleneck_act_blocks=params.model.bottleneck_act_blocks)
    if d.name == "digits" and d.image_size is not None:
        size = 1797 * (d.channels or 1) * d.image_size**2
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data.image_size={d.image_size} would hold the digits in {size / 2**30:.1f} GiB of "
                             f"memory, more than {MAX_DATA_BYTES / 2**30:g} GiB; use a smaller image_size")


def _check_samples(params: TrainConfig) -> None:
    """The class-balanced samples the trainer draws need one image per class and must fit the split they
    are drawn from: the clean train images (``train.clean_train_images // classes`` per class) from the
    training set as ``data.subset`` thins it, the Figure 7 images (``train.relu_stats_images // classes``)
    from the test split as ``data.eval_subset`` thins it. The message names what the user can change."""
    d, t = params.data, params.train
    classes = CLASSES.get(d.name)
    if classes is None:
        return
    relu_images = t.relu_stats_images if t.relu_stats else None
    for key, images in (("relu_stats_images", relu_images), ("clean_train_images", t.clean_train_images)):
        if images is not None and images < classes:
            raise ValueError(f"train.{key}={images} is fewer than the {classes} classes of {d.name}: a "
                             f"class-balanced sample needs at least one image per class; use >= {classes}")
    train_min, test_min = MIN_PER_CLASS[d.name]
    wanted = (("clean_train_images", t.clean_train_images, "subset", d.subset, train_min, "training"),
              ("relu_stats_images", relu_images, "eval_subset", d.eval_subset, test_min, "test"))
    for key, images, subset_key, subset, smallest, split in wanted:
        if images is None:
            continue
        per_class, have = images // classes, min(smallest, subset or smallest)
        if per_class > have:
            limit = f"data.{subset_key}={subset} keeps {subset}" if subset and subset < smallest else \
                f"the smallest class of {d.name}'s {split} split has {smallest}"
            raise ValueError(f"train.{key}={images} draws {per_class} {split} images per class, but {limit}; use "
                             f"train.{key} <= {have * classes}" + (f" or a larger data.{subset_key}"
                                                                   if subset and subset < smallest else ""))


def _check_resolution(params: TrainConfig) -> None:
    """An input smaller than the network's total stride leaves no pixel at the end: refused before any run."""
    from manifold_lab.models.mobilenetv2 import PRESETS, TABLE2

    d, m = params.data, params.model
    size = d.image_size or NATIVE_SIZE.get(d.name)
    if size is None:
        return
    preset = PRESETS[m.preset]
    total = math.prod([preset.get("stem_stride", 2), *(preset.get("stage_strides") or [row[3] for row in TABLE2])])
    if size < total:
        raise ValueError(f"data.image_size={d.image_size} gives {size} x {size} images, too small for the total stride "
                         f"{total} of the {m.preset} preset (no pixel left at the end); use data.image_size >= {total}"
                         if d.image_size else
                         f"{d.name} images are {size} x {size}, too small for the total stride {total} of the "
                         f"{m.preset} preset; set data.image_size >= {total} (digits are upscaled)")


def run(params: TrainConfig, seed: int, ctx: RunContext) -> dict:
    from manifold_lab.train.trainer import train

    return train(params, ctx.run_dir, seed=seed, progress=ctx.show_progress, log=ctx.log)


def run_batch(members: list) -> list[dict]:
    """``members = [(params, seed, ctx), ...]`` trained as one seed-batched network (``manifold_lab.train.batched``)."""
    from manifold_lab.train.batched import train_batch

    return train_batch([(params, ctx.run_dir, seed) for params, seed, ctx in members],
                       progress=members[0][2].show_progress, log=[ctx.log for _, _, ctx in members])


def batch_key(params: TrainConfig) -> str | None:
    """Runs that differ only in seed and activations share a key; None for what cannot be batched
    (a global gradient clip couples the members; a torchrun launch trains one network per process)."""
    from manifold_lab.train.batched import batch_key as key

    return None if params.train.grad_clip else key(params)


def warnings(params: TrainConfig) -> list[str]:
    """The traps of a valid configuration: a schedule that never leaves its warm-up."""
    epochs, warmup = params.train.epochs, params.schedule.warmup_epochs
    if warmup > 0 and epochs <= warmup:
        return [f"train.epochs={epochs} <= schedule.warmup_epochs={warmup:g}: every step is in the linear "
                "warm-up, the learning rate never reaches its peak"]
    return []


def chance(params: TrainConfig) -> dict[str, float]:
    """``test_acc`` of a network that learned nothing: 1 / classes (datasets whose classes are known)."""
    classes = CLASSES.get(params.data.name)
    return {"test_acc": 1 / classes} if classes else {}


def data(params: TrainConfig) -> str:
    """Where the run's dataset is read from (``manifold_lab.data.registry.find_data``); raises when absent."""
    from manifold_lab.data.registry import find_data

    d = params.data
    return find_data(d.name, root=d.root, download=d.download, cache_dir=d.cache_dir)


PLATEAU_EPOCHS = 3


def _plateau_table(variants: dict[str, list]) -> str:
    """Test-accuracy gain over the last ``PLATEAU_EPOCHS`` epochs of each run, in points.

    gain = 100 * (acc[E] - acc[E - PLATEAU_EPOCHS]) with acc the per-epoch test
    accuracy and E the last epoch; a gain near 0 (small against the spread over
    seeds) says the schedule has plateaued.
    """
    import numpy as np

    k = PLATEAU_EPOCHS
    lines = [f"Test-accuracy gain over the last {k} epochs, in points (mean over seeds, min to max): "
             "near 0 means the curve has flattened by the end of the schedule.", "",
             f"| variant | seeds | final test acc (%) | gain over the last {k} epochs | per seed |",
             "|---|---|---|---|---|"]
    rows = 0
    for label, rs in sorted(variants.items()):
        curves = [r.metrics["curve_test_acc"] for r in sorted(rs, key=lambda r: r.seed)]
        curves = [c for c in curves if len(c) > k]
        if not curves:
            continue
        rows += 1
        gains = np.array([100 * (c[-1] - c[-1 - k]) for c in curves])
        final = 100 * np.mean([c[-1] for c in curves])
        lines.append(f"| {md_cell(label)} | {len(curves)} | {final:.1f} | {gains.mean():+.2f} "
                     f"[{gains.min():+.2f}, {gains.max():+.2f}] | {', '.join(f'{g:+.2f}' for g in gains)} |")
    if not rows:
        epochs = max(len(r.metrics["curve_test_acc"]) for rs in variants.values() for r in rs)
        return f"_Runs of {epochs} epoch(s) are too short to check a plateau over the last {k} epochs._"
    return "\n".join(lines)


def _sample_text(data: dict, short: bool = False, step0: bool = True) -> str:
    """How a ``relu_stats.json`` was measured: its class-balanced sample, or the older first-256-images sample;
    ``step0=False`` leaves out how it measured step 0 (for a reader that measures step 0 another way)."""
    sample = data.get("sample")
    if not sample:
        return "old sample" if short else ("old sample: first 256 test images (one class), threshold C / 6"
                                           + (", step 0 on fresh running statistics" if step0 else ""))
    if short:
        return f"{sample['per_class']} per class"
    return (f"{sample['images']} test images, {sample['per_class']} per class of {len(sample['histogram'])}; "
            + (f"step 0: {sample['bn']['step0']}; " if step0 else "") + f"trained: {sample['bn']['final']}")


def _old_expansion_count(run) -> int:
    """Expansion shortcuts of a run made before issue 11 (``expansion_shortcuts_before_issue11``)."""
    from manifold_lab.models.mobilenetv2 import expansion_shortcuts_before_issue11
    from manifold_lab.train.trainer import build_model

    return expansion_shortcuts_before_issue11(build_model(TrainConfig.model_validate(run.params), 10, 3))


def _arms_table(variants: dict[str, list]) -> str:
    """Parameters and residual additions (``MobileNetV2.num_shortcuts``) of every variant, from its runs' metrics."""
    lines = ["| variant | parameters | shortcuts |", "|---|---|---|"]
    for label, rs in sorted(variants.items()):
        params = sorted({r.metrics.get("params") for r in rs} - {None})
        cuts = sorted({r.metrics.get("shortcuts") for r in rs} - {None})
        shown = ", ".join(map(str, cuts)) or "not recorded (an older run)"
        if cuts and any("shortcuts" not in r.metrics for r in rs):
            shown += " (not recorded by some older runs)"
        old = [r for r in rs if "shortcuts" not in r.metrics and r.param("model.shortcut") == "expansion"]
        if old:
            shown += (f"; the older expansion rule gave these runs {_old_expansion_count(old[0])} "
                      "shortcuts (now as many as the bottleneck arm): rerun the study")
        lines.append(f"| {md_cell(label)} | {', '.join(f'{p:,}' for p in params) or '-'} | {shown} |")
    return "\n".join(lines)


def report(ctx: ReportContext) -> list[ReportItem]:
    import numpy as np

    from manifold_lab.io import pyplot, savefig
    from manifold_lab.kinds.recoverability import panel_label

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in ctx.done_runs if r.metrics.get("curve_test_acc")]
    if not runs:
        return []
    keys = list(ctx.sweep_keys)
    variants: dict[str, list] = {}
    for r in runs:  # labelled by the values the sweep states ("none" is stored as the linear network's params)
        variants.setdefault(panel_label(keys, [r.sweep_values.get(k, r.param(k)) for k in keys]), []).append(r)
    items = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, rs) in enumerate(sorted(variants.items())):
        n = min(len(r.metrics["curve_test_acc"]) for r in rs)
        curves = np.array([r.metrics["curve_test_acc"][:n] for r in rs]) * 100
        epochs = np.arange(1, n + 1)
        ax.plot(epochs, curves.mean(0), color=f"C{i}", marker="o", ms=3, label=f"{label} ({len(rs)} seeds)")
        ax.fill_between(epochs, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(f"{ctx.name}: mean over seeds, band = min-max", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    savefig(fig, ctx.out_dir / "figures" / "accuracy_vs_epoch.png", dpi=130)
    plt.close(fig)
    items.append(ReportItem("Test accuracy vs epoch (Figure 6 style)", figure="figures/accuracy_vs_epoch.png"))
    items.append(ReportItem("Has training plateaued?", markdown=_plateau_table(variants)))
    items.append(ReportItem("Parameters and shortcuts of every variant", markdown=_arms_table(variants)))
    from manifold_lab.kinds.block_penalty import block_penalty_items

    items += block_penalty_items(ctx.done_runs, keys, ctx.out_dir)  # one block at a time: the penalty per block
    fitting = {label: [r for r in rs if r.metrics.get("curve_clean_train_loss")] for label, rs in variants.items()}
    fitting = {label: rs for label, rs in fitting.items() if rs}
    if fitting:  # issue 11 section 4: the test accuracy at matched fitting
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        for i, (label, rs) in enumerate(sorted(fitting.items())):
            n = min(len(r.metrics["curve_clean_train_loss"]) for r in rs)
            loss = np.mean([r.metrics["curve_clean_train_loss"][:n] for r in rs], axis=0)
            test = 100 * np.mean([r.metrics["curve_test_acc"][:n] for r in rs], axis=0)
            clean = 100 * np.mean([r.metrics["curve_clean_train_acc"][:n] for r in rs], axis=0)
            left.plot(loss, test, marker=".", color=f"C{i}", label=f"{label} ({len(rs)} seeds)")
            right.plot(np.arange(1, n + 1), clean, marker=".", color=f"C{i}", label=label)
        left.invert_xaxis()
        left.set_xlabel("clean train loss (eval mode, no augmentation; decreasing to the right)")
        left.set_ylabel("test top-1 accuracy (%)")
        right.set_xlabel("epoch")
        right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_ylabel("clean train accuracy (%)")
        left.legend(fontsize=7)
        fig.tight_layout()
        savefig(fig, ctx.out_dir / "figures" / "fitting.png", dpi=120)
        plt.close(fig)
        items.append(ReportItem("Test accuracy against how well the training set is fitted", figure="figures/fitting.png",
                                caption="one point per epoch, mean over seeds; the clean train metrics score a fixed "
                                        "class-balanced set of training images in eval mode without augmentation "
                                        "(train.clean_train_images): at equal training loss the curves compare the "
                                        "variants at matched fitting"))

    # Figure 7: the plot for the first seed of each variant, the table for every run.
    stats = [(label, rs[0], _relu_stats(rs[0])) for label, rs in sorted(variants.items())]
    stats = [s for s in stats if s[2]]
    if stats:
        from manifold_lab.train.figure7 import step0_measured, thresholds

        fig, axes = plt.subplots(len(stats), 2, figsize=(11, 2.8 * len(stats)), squeeze=False)
        step0_how = set()
        for row, (label, r, data) in enumerate(stats):
            today = thresholds(r.params.get("model", {}))
            measured = step0_measured(r.run_dir, data)
            step0_how.add(measured[1] if measured else f"as recorded ({_step0_bn(data)}), not measured as the "
                                                       "trained network is")
            for col, (when, recs) in enumerate((("step 0", measured[0] if measured else data.get("step0")),
                                                ("trained", data.get("final")))):
                ax = axes[row][col]
                recs = [rec for rec in recs or [] if not rec["name"].endswith(".act3")]  # the table's layers
                if not recs:
                    ax.set_visible(False)
                    continue
                x = np.arange(len(recs))
                frac = lambda k: np.array([rec[k] / rec["channels"] for rec in recs])  # noqa: E731
                ax.fill_between(x, frac("min"), frac("max"), alpha=0.3, label="min-max")
                ax.plot(x, frac("mean"), label="mean")
                ax.plot(x, [today.get(rec["name"], rec["threshold"]) / rec["channels"] for rec in recs],
                        color="k", ls="--", lw=1, label="threshold d / C (today's)")
                ax.set_ylim(0, 1)
                ax.set_title(f"{label} (seed {r.seed}): {when}"
                             + ("" if measured or col else " as recorded (not comparable)"), fontsize=8)
                ax.set_xlabel("ReLU layer")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_ylabel("positive channels / C")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        savefig(fig, ctx.out_dir / "figures" / "relu_stats.png", dpi=110)
        plt.close(fig)
        items.append(ReportItem("Positive channels per ReLU layer (Figure 7 style)", figure="figures/relu_stats.png",
                                caption="first seed of each variant; fraction of channels positive per Figure 7 layer (the "
                                        "table's layers: a non-linear bottleneck's own activations, act3, are "
                                        "not drawn); "
                                        "dashed: today's threshold d / C of each layer (as in the table below); "
                                        + "; ".join(sorted({_sample_text(d, step0=False) for _, _, d in stats}))
                                        + "; step 0: " + "; ".join(sorted(step0_how))))
        table = _figure7_table(variants)
        if table:
            items.append(ReportItem(table[0], markdown=table[1]))
    return items


THRESHOLD_RULE = ("today's threshold d of each layer (manifold_lab/train/relu_stats.py THRESHOLDS: the dimension of "
                  "the manifold it must keep, min(k, k') for a block's expansion and depthwise ReLUs, i.e. C / t when "
                  "it expands and k' for the t = 1 block; 3 for the stem; the last bottleneck's k' for the head) of "
                  "the network rebuilt from each run's configuration, whatever threshold its records carry")


def _relu_stats(run) -> dict | None:
    """The run's ``relu_stats.json`` (None when absent)."""
    import json

    from manifold_lab.io import read_text

    path = run.run_dir / "relu_stats.json"
    return json.loads(read_text(path, what="a run's relu_stats.json")) if path.exists() else None


def _step0_bn(data: dict) -> str:
    """How a ``relu_stats.json`` measured its own step 0."""
    sample = data.get("sample")
    return sample["bn"]["step0"] if sample else "fresh running statistics"


def _below_cell(margins: dict[str, float], most: int = 3) -> str:
    """The number of layers with a margin below 1, and the first ``most`` of them by name."""
    below = [name for name, m in margins.items() if m < 1]
    names = ", ".join(below[:most]) + (", ..." if len(below) > most else "")
    return f"{len(below)} ({names})" if below else "0"


def _figure7_table(variants: dict[str, list]) -> tuple[str, str] | None:
    """``(heading, table)``: per run, the Figure 7 layers below their threshold at step 0 and trained, and the
    trained network's smallest and median margin, measured as the claim table's Figure 7 row does
    (``manifold_lab.reproduction.rules.layers_below``): today's thresholds (``THRESHOLD_RULE``), a layer's margin =
    mean positive-channel count / d, below = margin < 1, step 0 only where it was measured as the trained network
    is (``manifold_lab.train.figure7.step0_measured``; else "not measured the same way" and the heading names
    ``STEP0_COMMAND`` for the study's folder, as ``results/<study>``). None when no run has Figure 7 records."""
    import numpy as np

    from manifold_lab.train.figure7 import STEP0_COMMAND, STEP0_FILE, step0_measured, thresholds
    from manifold_lab.train.relu_stats import margins

    lines = ["| variant | seed | layers | below at step 0 | below trained | smallest margin, trained | "
             "median margin, trained | sample |", "|---|---|---|---|---|---|---|---|"]
    old, missing, how, runs = 0, 0, {}, 0
    for label, rs in sorted(variants.items()):
        for r in sorted(rs, key=lambda r: r.seed):
            data = _relu_stats(r)
            if not data or not data.get("final"):
                continue
            runs += 1
            old += not data.get("sample")
            today = thresholds(r.params.get("model", {}))
            final = margins(data["final"], today)
            measured = step0_measured(r.run_dir, data)
            if measured:
                key = (measured[1], not _step0_bn(data).startswith("running statistics"))  # (how, recomputed)
                how[key] = how.get(key, 0) + 1
                step0 = _below_cell(margins(measured[0], today))
            else:
                missing += bool(data.get("sample"))
                step0 = "not measured the same way"
            values = list(final.values())
            lines.append(f"| {md_cell(label)} | {r.seed} | {len(final)} | {step0} | {_below_cell(final)} | "
                         f"{min(values):.2f} | {float(np.median(values)):.2f} | {_sample_text(data, short=True)} |")
    if not runs:
        return None
    root = next(r for rs in variants.values() for r in rs).run_dir.parent.parent  # <folder>/runs/<id>
    command = STEP0_COMMAND.format(folder=f"{root.parent.name}/{root.name}")
    again = f", recomputed into runs/<id>/{STEP0_FILE} by `{command}`"
    step0 = "; ".join(f"{text} ({n} of {runs} runs{again if recomputed else ''})"
                      for (text, recomputed), n in sorted(how.items()))
    heading = ("ReLU layers whose mean positive-channel count is below the invertibility threshold, every run, as the "
               f"claim table's Figure 7 row measures them: {THRESHOLD_RULE}; a layer's margin = mean "
               "positive-channel count / d, below = margin < 1 (the layers of Figure 7: a non-linear bottleneck's "
               "own activations are not counted). Trained: eval mode, running statistics"
               + (f". Step 0 measured the same way: {step0}" if step0 else "")
               + (f". {missing} of {runs} runs have no step 0 measured as their trained network is (recorded with "
                  f"the sample's batch statistics, not comparable): `{command}` adds it" if missing else "")
               + ("" if step0 or missing else ". No run has a step 0 measured the same way")
               + (". Rows marked *old sample* were measured on the first 256 test images of a class-sorted split "
                  "(all airplanes), step 0 in eval mode on fresh running statistics; rerun the study to measure "
                  "them on the class-balanced sample (checkpoints are not kept)" if old else ""))
    return heading, "\n".join(lines)


KIND = Kind(
    name="mobilenetv2",
    description="train MobileNetV2 (linear vs non-linear bottlenecks, shortcut placement) on real images",
    params=TrainConfig,
    run=run,
    report=report,
    check=check,
    bookkeeping=("params", "epochs", "images_per_s"),
    warnings=warnings,
    run_batch=run_batch,
    batch_key=batch_key,
    chance=chance,
    data=data,
)
