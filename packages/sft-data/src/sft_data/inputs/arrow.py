"""Parquet, Arrow IPC and ``datasets.save_to_disk`` inputs, read one record batch at a time.

The row is the record's 1-based position in the file (in a ``datasets`` directory: across its Arrow
files, in the order ``state.json`` lists them, which is the dataset's order).

A record batch travels to the process that builds it as Arrow IPC bytes (a pickled slice would
carry its whole parent batch) and becomes Python dicts only there. Arrow gives every row of a struct
column all of the struct's fields, absent ones as null, so null values inside records are dropped:
a record reads the same as the JSON object it was made from, provided that object had no nulls of
its own (an explicit ``null`` and an absent key are one thing here). Struct fields also share one
order in every row; keep dicts whose key order matters to the text (tool-call arguments, tool
schemas) as JSON strings in such files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sft_data.errors import SftError
from sft_data.inputs.base import ARROW, CHUNK_BYTES, CHUNK_ROWS, Chunk
from sft_data.records import Record

PARQUET_MAGIC = b"PAR1"
ARROW_FILE_MAGIC = b"ARROW1"
ARROW_STREAM_MAGIC = b"\xff\xff\xff\xff"
DATASETS_STATE = "state.json"
DATASET_DICT = "dataset_dict.json"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def decode_batch(path: str, first_row: int, payload: bytes) -> Iterator[Record]:
    import pyarrow as pa

    batch = pa.ipc.open_stream(payload).read_all()
    for offset, row in enumerate(batch.to_pylist()):
        yield Record(path, first_row + offset, _without_nulls(row))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _ipc(batch) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


class _BatchedInput:
    """Chunks from record batches: each batch cut into slices of at most ``rows`` rows."""

    path: str

    def batches(self) -> Iterator[Any]:
        raise NotImplementedError

    def chunks(self, rows: int = CHUNK_ROWS, max_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
        next_row = 1
        batches = self.batches()
        while True:
            try:
                batch = next(batches, None)
            except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
                raise SftError(f"{self.path}: unreadable {self.kind} data after row {next_row - 1} "
                               f"({_one_line(exc)})") from None
            if batch is None:
                return
            # Slices as long as `rows`, shorter when rows are large (the byte budget).
            per_row = max(batch.nbytes // max(batch.num_rows, 1), 1)
            step = max(1, min(rows, max_bytes // per_row))
            for start in range(0, batch.num_rows, step):
                part = batch.slice(start, step)
                yield Chunk(self.path, ARROW, [(next_row, _ipc(part))], part.num_rows)
                next_row += part.num_rows


class ParquetInput(_BatchedInput):
    kind = "parquet"

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = str(path)
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:
            raise SftError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None

    def estimate_rows(self) -> int | None:
        return self._file.metadata.num_rows

    def batches(self) -> Iterator[Any]:
        return self._file.iter_batches(batch_size=CHUNK_ROWS)


class ArrowInput(_BatchedInput):
    """An Arrow IPC file (``ARROW1``, Feather v2) or stream (what ``datasets`` writes)."""

    kind = "arrow"

    def __init__(self, path: str | Path, files: list[Path] | None = None):
        self.path = str(path)
        self._files = files or [Path(path)]
        self._rows: int | None = None

    def _open(self, file: Path):
        import pyarrow as pa

        try:
            source = pa.memory_map(str(file))
            head = source.read(len(ARROW_FILE_MAGIC))
            source.seek(0)
            if head == ARROW_FILE_MAGIC:
                reader = pa.ipc.open_file(source)
                return reader, (reader.get_batch(i) for i in range(reader.num_record_batches))
            reader = pa.ipc.open_stream(source)
            return reader, iter(reader)
        except (OSError, ValueError) as exc:
            raise SftError(f"{file}: not a readable Arrow file ({_one_line(exc)})") from None

    def estimate_rows(self) -> int | None:
        return None

    def batches(self) -> Iterator[Any]:
        for file in self._files:
            _, batches = self._open(file)
            yield from batches


class DatasetsInput(ArrowInput):
    """A directory written by ``datasets.Dataset.save_to_disk``: ``state.json`` lists its Arrow files."""

    kind = "datasets"

    def __init__(self, path: str | Path):
        directory = Path(path)
        try:
            state = json.loads((directory / DATASETS_STATE).read_text(encoding="utf-8"))
            names = [entry["filename"] for entry in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SftError(f"{directory / DATASETS_STATE}: not a datasets state file ({_one_line(exc)})") from None
        files = []
        for name in names:
            file = (directory / name).resolve()
            if directory.resolve() not in file.parents:
                raise SftError(f"{directory / DATASETS_STATE}: data file {name!r} is outside the directory")
            if not file.is_file():
                raise SftError(f"{directory}: data file {name} listed in {DATASETS_STATE} is missing")
            files.append(file)
        if not files:
            raise SftError(f"{directory / DATASETS_STATE}: lists no data files")
        super().__init__(directory, files)

    def estimate_rows(self) -> int | None:
        try:
            info = json.loads((Path(self.path) / "dataset_info.json").read_text(encoding="utf-8"))
            return sum(int(split["num_examples"]) for split in (info.get("splits") or {}).values()) or None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def dataset_dict_splits(directory: Path) -> list[str]:
    try:
        return list(json.loads((directory / DATASET_DICT).read_text(encoding="utf-8"))["splits"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
