"""The optimizer's CPU and torch-Adam shims, private to ``megatron_cpu``: its ``install()`` applies
them (``install_methods``, and ``clip_grad_by_total_norm_cpu`` through its function table) and
``uninstall()`` removes them; nothing but their tests imports this module.

On the CPU: gradient clipping and building megatron-core's ``DistributedOptimizer``. On every
device without Apex or Transformer Engine (every CPU, and GPUs without them) the distributed
optimizer wraps ``torch.optim.Adam``, which keeps ``step`` as a tensor in each parameter's state,
where the fused optimizers keep it in the param groups; upstream's checkpoint code assumes the
latter in three places. Each wrapper names the method it stands in for and has a test in
``tests/test_megatron_cpu_optim.py``.
"""

from __future__ import annotations

import functools
import inspect
import types

import torch


def clip_grad_by_total_norm_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False) -> None:
    """Stands in for ``optimizer.clip_grads.clip_grad_by_total_norm_fp32``.

    Upstream asserts ``param.grad.type() == 'torch.cuda.FloatTensor'`` and scales through a CUDA
    overflow buffer; on the CPU the same scaling is a plain in-place multiply.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr).detach() for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if isinstance(clip_coeff, torch.Tensor):
        clip_coeff = float(clip_coeff.clamp_max(1.0))
    if clip_coeff < 1.0:
        for grad in grads:
            grad.mul_(clip_coeff)


def set_states_without_step(original):
    """Stands in for ``DistributedOptimizer._set_main_param_and_optimizer_states`` with torch's Adam.

    Without Apex or Transformer Engine the distributed optimizer wraps ``torch.optim.Adam``, whose
    per-parameter state holds ``step`` as a tensor; upstream copies every tensor of that state
    from the checkpoint's, which has none for ``step`` (it lives in the param groups), so loading
    a ``fully_reshardable`` optimizer checkpoint fails with KeyError 'step'. A ``None`` entry is
    what upstream already skips. Needed on every device without Apex/TE.
    """

    @functools.wraps(original)
    def set_states(self, model_param, tensors):
        return original(self, model_param, {"step": None, **tensors})

    return set_states


def sharded_state_dict_fresh(original):
    """Stands in for ``DistributedOptimizer.sharded_state_dict(..., is_loading=True)`` with torch's Adam.

    Upstream's ``state_dict()`` reads the step from the torch optimizer's per-parameter state,
    which is empty before the first step: resuming into a fresh optimizer fails its
    ``assert len(steps) == 1``. The state is allocated first (``init_state_fn``, zeros, as
    upstream does for its other optimizers when loading) with a step of 0, which the checkpoint
    then overwrites. Needed on every device without Apex/TE.
    """

    @functools.wraps(original)
    def sharded_state_dict(self, model_sharded_state_dict=None, is_loading=False, *args, **kwargs):
        if is_loading and len(self.optimizer.state) == 0 and self.init_state_fn is not None:
            self.init_state_fn(self.optimizer, self.config)
            for state in self.optimizer.state.values():
                state["step"] = torch.tensor(0.0)
        return original(self, model_sharded_state_dict or {}, is_loading, *args, **kwargs)

    return sharded_state_dict


def load_state_dict_own_steps(original):
    """Stands in for ``DistributedOptimizer.load_state_dict`` with torch's Adam.

    Upstream gives every parameter's state the *same* ``step`` tensor; torch's Adam increments
    each parameter's step in place, so after a resume the shared counter advances once per
    parameter per step and the bias correction goes wrong from the second step on. Each
    parameter gets its own copy. Needed on every device without Apex/TE.
    """

    @functools.wraps(original)
    def load_state_dict(self, state_dict):
        original(self, state_dict)
        for state in self.optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()

    return load_state_dict


def _cuda_type_name(tensor: torch.Tensor, dtype=None, *args, **kwargs):
    """``Tensor.type()`` as a CUDA tensor would answer it; conversions (``type(dtype)``) unchanged."""
    if dtype is None and not args and not kwargs:
        return torch.Tensor.type(tensor).replace("torch.", "torch.cuda.", 1)
    return torch.Tensor.type(tensor, dtype, *args, **kwargs)


def distributed_optimizer_init_cpu(original):
    """Stands in for ``optimizer.distrib_optimizer.DistributedOptimizer.__init__``.

    Upstream sorts parameters by ``param.type()`` and accepts only ``torch.cuda.*Tensor`` names
    (``_build_model_and_main_param_groups`` raises TypeError for ``torch.FloatTensor``). While the
    optimizer is built, each parameter answers ``type()`` with its CUDA name; the override is an
    instance attribute removed right after, so nothing else ever sees it.
    """
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        chunks = signature.bind(self, *args, **kwargs).arguments["model_chunks"]
        params = [p for chunk in chunks for p in chunk.parameters()]
        for param in params:
            param.type = types.MethodType(_cuda_type_name, param)
        try:
            original(self, *args, **kwargs)
        finally:
            for param in params:
                del param.type

    return init


# (class, method, wrapper, CPU only): upstream methods replaced by a wrapper around them; the
# torch-Adam ones on every device without Apex/TE, the others on the CPU
_METHOD_SHIMS = (
    ("DistributedOptimizer", "__init__", distributed_optimizer_init_cpu, True),
    ("DistributedOptimizer", "_set_main_param_and_optimizer_states", set_states_without_step, False),
    ("DistributedOptimizer", "sharded_state_dict", sharded_state_dict_fresh, False),
    ("DistributedOptimizer", "load_state_dict", load_state_dict_own_steps, False),
)
_saved_methods: dict[tuple[str, str], object] = {}


def install_methods(cpu: bool) -> None:
    from megatron.core.optimizer import distrib_optimizer

    for cls_name, name, wrapper, cpu_only in _METHOD_SHIMS:
        needed = cpu if cpu_only else not distrib_optimizer.HAVE_APEX_OR_TE
        if not needed or (cls_name, name) in _saved_methods:
            continue
        cls = getattr(distrib_optimizer, cls_name)
        _saved_methods[(cls_name, name)] = cls.__dict__[name]
        setattr(cls, name, wrapper(cls.__dict__[name]))


def uninstall_methods() -> None:
    from megatron.core.optimizer import distrib_optimizer

    for (cls_name, name), original in _saved_methods.items():
        setattr(getattr(distrib_optimizer, cls_name), name, original)
    _saved_methods.clear()
