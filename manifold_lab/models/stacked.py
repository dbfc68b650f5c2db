"""Seed-batched networks: K networks of identical shapes run as one (grouped) network.

A study trains one architecture with several seeds, often in several arms of the same
shapes (identity and relu6 bottlenecks). ``stack_models(members)`` builds one network
whose every activation holds the K members side by side along the channel axis: member
``k`` owns channels ``[k C, (k + 1) C)`` of a layer of ``C`` channels per member.

Layer by layer, for a member layer with ``C`` output channels:

==========================  ===============================================================
member                      stacked
==========================  ===============================================================
``Conv2d(i, o, groups=g)``  ``Conv2d(K i, K o, groups=K g)``: the stem and dense 1x1 convs
                            get ``groups = K``, a depthwise conv ``groups = K C``
``BatchNorm2d(C)``          ``BatchNorm2d(K C)``: statistics are per channel, so per member
``Linear(F, n)``            ``MemberLinear``: weight ``(K, n, F)``, bias ``(K n,)``
``Dropout(p)``              ``MemberDropout``: member ``k``'s mask from member ``k``'s own
                            generator state (the mask it would draw if trained alone)
activation                  the same module when every member has the same one, else
                            ``MemberActivation`` (member ``k``'s own on its channel slice)
==========================  ===============================================================

Input ``(B, K c_in, H, W)`` (the members' batches concatenated along channels, member
``k``'s images in channels ``[k c_in, (k + 1) c_in)``) -> logits ``(B, K, classes)``.

No layer mixes channels of two members, so with the loss ``sum_k CE_k`` every parameter's
gradient is its member's own, and any element-wise optimizer (SGD with momentum and
weight decay, RMSProp, AdamW, an EMA) updates each member exactly as if it were trained
alone. A global gradient-norm clip would couple them; the trainer refuses it.

State dicts keep the member's keys. Every stacked tensor is the members' tensors
concatenated along dimension 0 (``stack_state``); member ``k``'s tensor is
``t.reshape(K, -1)[k].view(member_shape)`` (``member_state``). Shapes and module types
must agree (``ValueError`` naming the first difference); only activations may differ.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

#: Activation modules a member may have where another has a different one.
_ACTIVATION_TYPES = (nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.SiLU, nn.GELU)


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


class MemberLinear(nn.Module):
    """K independent ``Linear(F, n)``: input ``(B, K F)`` or ``(B, K, F)`` -> ``(B, K, n)``.

    ``y[b, k] = W[k] x[b, k] + bias[k n : (k + 1) n]``; ``weight`` is ``(K, n, F)``, ``bias``
    is one-dimensional ``(K n,)`` as a member's bias is (the optimizer's no-decay group).
    """

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members * out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.members, self.in_features)
        return torch.einsum("bkf,knf->bkn", x, self.weight) + self.bias.view(self.members, self.out_features)


class MemberDropout(nn.Module):
    """Dropout whose mask for member ``k`` comes from member ``k``'s generator state.

    ``states[k]`` is the state of the default generator of the device the dropout runs on
    (``torch.Generator.get_state()``), as member ``k`` trained alone would hold it; each call
    swaps it in, runs ``F.dropout`` on member ``k``'s ``(B, F)`` slice, and stores the advanced
    state back, so the masks are the ones separate training draws. Input ``(B, K F)`` or
    ``(B, K, F)`` -> ``(B, K, F)``. Inside CUDA-graph capture (where generator states cannot be
    swapped) one mask is drawn from the global generator instead: the same distribution.
    """

    def __init__(self, members: int, p: float):
        super().__init__()
        self.members, self.p = members, float(p)
        self.states: list[torch.Tensor | None] = [None] * members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.members, -1)
        if not self.training or self.p == 0:
            return x
        if x.is_cuda and torch.cuda.is_current_stream_capturing():  # see the class docstring
            return F.dropout(x, self.p, True)
        gen = _default_generator(x.device)
        saved = gen.get_state()
        out = []
        try:
            for k in range(self.members):
                if self.states[k] is not None:
                    gen.set_state(self.states[k])
                out.append(F.dropout(x[:, k].contiguous(), self.p, True))
                self.states[k] = gen.get_state()
        finally:
            gen.set_state(saved)
        return torch.stack(out, dim=1)


class MemberActivation(nn.Module):
    """Member ``k``'s activation on its channels ``[k C, (k + 1) C)``; ``(B, K C, ...)`` -> same shape."""

    def __init__(self, activations: list[nn.Module]):
        super().__init__()
        self.acts = nn.ModuleList(activations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([act(part) for act, part in zip(self.acts, x.chunk(len(self.acts), dim=1))], dim=1)


def _describe(module: nn.Module) -> tuple:
    if isinstance(module, nn.Conv2d):
        return ("Conv2d", module.in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, module.groups, module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return ("BatchNorm2d", module.num_features, module.eps, module.momentum, module.affine)
    if isinstance(module, nn.Linear):
        return ("Linear", module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, nn.Dropout):
        return ("Dropout", module.p)
    return (type(module).__name__,)


def _stacked_module(modules: list[nn.Module], name: str) -> nn.Module | None:
    """The stacked replacement of one leaf module of every member (None: keep member 0's)."""
    k = len(modules)
    first = modules[0]
    if isinstance(first, _ACTIVATION_TYPES) and all(isinstance(m, _ACTIVATION_TYPES) for m in modules):
        if all(repr(m) == repr(first) for m in modules):
            return None
        return MemberActivation([copy.deepcopy(m) for m in modules])
    shapes = {_describe(m) for m in modules}
    if len(shapes) > 1:
        raise ValueError(f"members differ at {name or 'the model'}: {sorted(map(str, shapes))}; only activations "
                         f"may differ between stacked members")
    if isinstance(first, nn.Conv2d):
        if first.bias is not None or first.padding_mode != "zeros":
            raise ValueError(f"{name}: stacking supports bias-free zero-padded convolutions only")
        return nn.Conv2d(k * first.in_channels, k * first.out_channels, first.kernel_size, first.stride,
                         first.padding, first.dilation, groups=k * first.groups, bias=False)
    if isinstance(first, nn.BatchNorm2d):
        return nn.BatchNorm2d(k * first.num_features, eps=first.eps, momentum=first.momentum, affine=first.affine,
                              track_running_stats=first.track_running_stats)
    if isinstance(first, nn.Linear):
        if first.bias is None:
            raise ValueError(f"{name}: stacking needs a Linear layer with a bias")
        return MemberLinear(k, first.in_features, first.out_features)
    if isinstance(first, nn.Dropout):
        return MemberDropout(k, first.p)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise ValueError(f"{name}: cannot stack a {type(first).__name__} (parameters or buffers of its own)")
    return None


def stack_models(members: list[nn.Module]) -> nn.Module:
    """One network computing the ``K = len(members)`` members side by side (module docstring).

    The members must share every shape (``ValueError`` otherwise); their weights and buffers
    are copied in. The result is a copy of member 0's structure with stacked layers, so its
    ``forward`` (residuals, pooling) is member 0's, and ``.members`` is ``K``.
    """
    if not members:
        raise ValueError("stack_models needs at least one member")
    k = len(members)
    stacked = copy.deepcopy(members[0])
    names = [name for name, m in members[0].named_modules() if not list(m.children())]
    per_member = [dict(m.named_modules()) for m in members]
    for name in names:
        try:
            group = [modules[name] for modules in per_member]
        except KeyError:
            raise ValueError(f"members differ: {name} is missing from some") from None
        new = _stacked_module(group, name)
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            setattr(stacked.get_submodule(parent_name), child, new)
    if k > 1 and hasattr(stacked, "classifier") and not any(isinstance(m, MemberLinear) for m in stacked.modules()):
        raise ValueError("stack_models: the members have no Linear classifier to stack")
    stacked.members = k
    load_stacked_state(stacked, [m.state_dict() for m in members])
    return stacked


def stack_state(states: list[dict]) -> dict:
    """Member state dicts -> the stacked state dict: each tensor the members' concatenated along dim 0,
    flattened per member; 0-dimensional tensors (``num_batches_tracked``) must agree and stay as they are."""
    out = {}
    for key, first in states[0].items():
        tensors = [s[key] for s in states]
        if first.ndim == 0:
            if any(not torch.equal(t, first) for t in tensors):
                raise ValueError(f"stack_state: {key} differs between members ({[t.item() for t in tensors]})")
            out[key] = first.clone()
        else:
            out[key] = torch.stack([t.reshape(-1) for t in tensors])
    return out


def member_state(stacked_state: dict, k: int, like: dict) -> dict:
    """Member ``k``'s state dict cut from a stacked one; ``like`` gives the member's keys and shapes."""
    return {key: stacked_state[key].clone() if ref.ndim == 0
            else stacked_state[key].reshape(-1, ref.numel())[k].reshape(ref.shape).clone() for key, ref in like.items()}


def load_stacked_state(stacked: nn.Module, states: list[dict]) -> None:
    """Load the members' state dicts into a stacked model (shapes as ``stack_state`` makes them)."""
    flat = stack_state(states)
    target = stacked.state_dict()
    stacked.load_state_dict({key: flat[key].reshape(target[key].shape) for key in target})


def stack_optimizer_state(states: list[dict], stacked_params: list[torch.Tensor]) -> dict:
    """Member optimizer state dicts -> the stacked optimizer's; ``stacked_params`` in the stacked
    optimizer's order (its ``param_groups``, concatenated; see ``member_optimizer_state``)."""
    out = {"param_groups": copy.deepcopy(states[0]["param_groups"]), "state": {}}
    for idx, first in states[0]["state"].items():
        out["state"][idx] = {
            key: (torch.stack([s["state"][idx][key].reshape(-1) for s in states]).reshape(stacked_params[idx].shape)
                  if isinstance(value, torch.Tensor) and value.ndim > 0 else value)
            for key, value in first.items()}
    return out


def member_optimizer_state(stacked: dict, k: int, member_params: list[torch.Tensor]) -> dict:
    """Member ``k``'s optimizer state dict cut from the stacked optimizer's.

    ``member_params`` are the member's parameters in its optimizer's order (its ``param_groups``,
    concatenated): both optimizers split the parameters into the same groups in the same order, so
    state entry ``i`` of the stacked optimizer is the stack of the members' entries ``i``: tensors
    with a parameter's shape are cut like the parameters, scalars (a step count) are shared.
    """
    out = {"param_groups": copy.deepcopy(stacked["param_groups"]), "state": {}}
    for idx, entry in stacked["state"].items():
        out["state"][idx] = {
            key: (value.reshape(-1, member_params[idx].numel())[k].reshape(member_params[idx].shape).clone()
                  if isinstance(value, torch.Tensor) and value.ndim > 0 else value)
            for key, value in entry.items()}
    return out
