"""Writing scalars and text into a TensorBoard event file with the ``tensorboard`` package."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

INSTALL_HINT = "install it with `uv pip install tensorboard` (or `pip install sft-tensorboard`)"


class MissingDependencyError(RuntimeError):
    """The plugin is installed but the ``tensorboard`` package is not (one line, says how to fix it)."""


def _tensorboard():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise MissingDependencyError(f"the sft-tensorboard plugin needs the `tensorboard` package; "
                                     f"{INSTALL_HINT}") from None
    return EventFileWriter, event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2


class TensorBoardLogger:
    """Every metric under its metrics.jsonl name (``train/loss``, ``validation/loss``, …)."""

    def __init__(self, log_dir: Path):
        writer, self._event, self._summary, self._tensor, self._shape, self._types = _tensorboard()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self._writer = writer(str(log_dir))

    def _write(self, step: int, values: list) -> None:
        summary = self._summary.Summary(value=values)
        self._writer.add_event(self._event.Event(wall_time=time.time(), step=step, summary=summary))

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        values = [self._summary.Summary.Value(tag=name, simple_value=float(value))
                  for name, value in metrics.items()
                  if isinstance(value, int | float) and not isinstance(value, bool)]
        # NaN/Inf are valid simple_values: TensorBoard shows them, so a diverging run is visible.
        if values:
            self._write(step, values)
        self._writer.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        """The config as one text summary (JSON in a Markdown code block, as the text plugin renders it)."""
        text = "```\n" + json.dumps(config, indent=2, default=str, allow_nan=True) + "\n```"
        tensor = self._tensor.TensorProto(
            dtype=self._types.DT_STRING, string_val=[text.encode("utf-8")],
            tensor_shape=self._shape.TensorShapeProto(dim=[self._shape.TensorShapeProto.Dim(size=1)]))
        metadata = self._summary.SummaryMetadata(
            plugin_data=self._summary.SummaryMetadata.PluginData(plugin_name="text"))
        self._write(0, [self._summary.Summary.Value(tag="config", tensor=tensor, metadata=metadata)])
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
