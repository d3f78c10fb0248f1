"""``model_weights/``: a megatron-core dist checkpoint (torch_dist) with the reference's ``model.`` prefix.

Saving writes this process's shards; loading reshards to whatever TP/PP the model was built
for. Nothing reaches megatron before ``untrusted.verify_weights`` has put every pickled byte of
the directory through the one restricted loader (see that module for why it is a gate).
"""

from __future__ import annotations

from pathlib import Path

from sft_model.errors import NemoArchiveError
from sft_model.nemo.untrusted import verify_weights

PREFIX = "model."
EXTRA_STATE = "._extra_state"


def _sharded(model, select, *, extra_state: bool = True) -> dict:
    sharded = model.sharded_state_dict(prefix=PREFIX)
    return {k: v for k, v in sharded.items()
            if (select is None or select(k.removeprefix(PREFIX))) and (extra_state or not k.endswith(EXTRA_STATE))}


def save(model, directory: Path, select=None) -> None:
    """Every rank writes its shards of ``model`` (all ranks must call this); ``select(key)``, given
    a key without the ``model.`` prefix, keeps only some tensors (a PEFT method's adapters)."""
    from megatron.core import dist_checkpointing

    dist_checkpointing.save(_sharded(model, select), str(directory))


def _stored(key: str, stored: set[str]) -> bool:
    # sharded objects (extra state) are stored as "<key>/shard_…"
    return key in stored or any(name.startswith(key + "/") for name in stored)


def load(model, directory: Path, origin: str | Path, *, select=None, absent_ok=None) -> None:
    """Fill ``model`` (this rank's shards) from the checkpoint, resharding as needed.

    ``select(key)`` restricts loading to some tensors; tensors the checkpoint lacks for which
    ``absent_ok(key)`` is true keep their built values (adapters absent from a base model).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.core import CheckpointingException
    from torch.distributed.checkpoint.api import CheckpointException

    meta = verify_weights(directory, origin)
    # Extra state is not loaded: megatron's local layers ignore it, sft never trains in FP8 (the
    # only state Transformer Engine keeps there), and TE's set_extra_state unpickles it unrestricted.
    sharded = _sharded(model, select, extra_state=False)
    if absent_ok is not None:
        stored = set(meta.state_dict_metadata)
        sharded = {k: v for k, v in sharded.items()
                   if not absent_ok(k.removeprefix(PREFIX)) or _stored(getattr(v, "key", k), stored)}
    wanted = {k.removeprefix(PREFIX) for k in sharded}
    try:
        state = dist_checkpointing.load(sharded, str(directory))
    except (CheckpointingException, CheckpointException, KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise NemoArchiveError(f"{origin}: weights do not match the model config ({first})") from None
    result = model.load_state_dict({k.removeprefix(PREFIX): v for k, v in state.items()}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state") and k in wanted]
    if missing:
        raise NemoArchiveError(f"{origin}: the checkpoint has no value for {len(missing)} tensors, e.g. {missing[0]!r}")


def global_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Checkpoint key (without ``model.``) → global shape, from the DCP metadata (through the allow-list).

    megatron's ``load_tensors_metadata`` fails on this torch (TensorProperties gained ``strides``).
    """
    return shapes(verify_weights(directory, directory))


def shapes(meta) -> dict[str, tuple[int, ...]]:
    """``global_shapes`` of an already (allow-list) unpickled DCP metadata."""
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: tuple(v.size)
            for k, v in meta.state_dict_metadata.items() if hasattr(v, "size")}
