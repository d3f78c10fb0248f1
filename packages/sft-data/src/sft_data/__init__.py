"""sft_data: records, formats, chat templates, tokenizers, loss masks, packing and datasets.

The public API (no torch needed except for ``sft_data.dataset``)::

    from sft_data import DataConfig, load_tokenizer, prepare, PreparedDataset
    tok = load_tokenizer("tok.model")
    result = prepare(["train.jsonl"], tok, DataConfig(max_seq_length=2048, pack_size=2048), "prepared/")
    print(result.stats)
"""

from sft_data.config import DataConfig
from sft_data.errors import InvalidRecordsError, RecordProblem, SftError
from sft_data.prepare import PrepareResult, prepare
from sft_data.store import PreparedDataset
from sft_data.tokenizers.loading import load_tokenizer
from sft_data.types import Conversation, PromptResponse, Segment, TokenizedSample, Turn

__all__ = [
    "Conversation",
    "DataConfig",
    "InvalidRecordsError",
    "PrepareResult",
    "PreparedDataset",
    "PromptResponse",
    "RecordProblem",
    "Segment",
    "SftError",
    "TokenizedSample",
    "Turn",
    "load_tokenizer",
    "prepare",
]
