"""Workarounds for megatron-core 0.19.2's distributed optimizer when it falls back to torch's Adam.

Without Apex or Transformer Engine (every CPU, and GPUs without them) ``DistributedOptimizer``
wraps ``torch.optim.Adam``, which keeps ``step`` as a tensor in each parameter's state, where the
fused optimizers keep it in the param groups. Upstream's checkpoint code assumes the latter in
three places; each wrapper below names the method it stands in for and has a test in
``tests/test_megatron_cpu.py``. ``megatron_cpu.install()`` applies them, only when upstream falls
back (``distrib_optimizer.HAVE_APEX_OR_TE`` false), on any device.
"""

from __future__ import annotations

import functools

import torch


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
