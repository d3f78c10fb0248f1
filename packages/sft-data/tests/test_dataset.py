"""Collate exactness: per-sequence shift, position ids, boundaries, label mask, padding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sft_data.dataset import BinDataset, Collator, block_causal_mask, collate_arrays
from sft_data.errors import SftError
from sft_data.sampler import GlobalBatchSampler
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample


def seq(ids, mask):
    return np.array(ids, dtype=np.int32), np.array(mask, dtype=bool)


def test_a_packed_row_by_hand():
    bins = [[seq([10, 11, 12, 13], [0, 0, 1, 1]), seq([20, 21, 22], [0, 1, 1])], [seq([30, 31], [0, 1])]]
    batch = collate_arrays(bins, pack_size=8, pad_id=0)
    assert batch["tokens"].tolist() == [[10, 11, 12, 20, 21, 0, 0, 0], [30, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[11, 12, 13, 21, 22, 0, 0, 0], [31, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["loss_mask"].astype(int).tolist() == [[0, 1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2], [0, 0, 1, 2, 3, 4, 5, 6]]
    # padding is a pseudo-sequence of its own; -1 fills the shorter row
    assert batch["cu_seqlens"].tolist() == [[0, 3, 5, 8], [0, 1, 8, -1]]
    assert batch["cu_seqlens_argmin"].tolist() == [4, 3]
    assert batch["max_seqlen"].tolist() == [3, 7]
    assert batch["row_tokens"].tolist() == [5, 1]  # real positions first, then padding


def test_a_full_row_has_no_pad_segment():
    batch = collate_arrays([[seq([1, 2, 3], [0, 1, 1]), seq([4, 5, 6], [0, 1, 1])]], pack_size=4)
    assert batch["cu_seqlens"].tolist() == [[0, 2, 4]]
    assert batch["loss_mask"].all()


def test_unpacked_rows_pad_to_a_multiple_of_16():
    bins = [[seq(range(18), [0] + [1] * 17)], [seq([1, 2], [0, 1])]]
    batch = collate_arrays(bins)  # longest row: 17 positions -> 32
    assert batch["tokens"].shape == (2, 32)
    assert batch["loss_mask"].sum(axis=1).tolist() == [17, 1]
    assert collate_arrays([[seq([1, 2], [0, 1])]])["tokens"].shape == (1, 16)


def test_an_overfull_bin_is_refused():
    with pytest.raises(SftError, match="fills 5 positions, more than the pack size 4"):
        collate_arrays([[seq(range(6), [0] * 6)]], pack_size=4)


@st.composite
def random_bins(draw):
    pack_size = draw(st.integers(4, 40))
    bins = []
    for _ in range(draw(st.integers(1, 4))):
        room, b = pack_size, []
        while room >= 1 and draw(st.booleans()):
            length = draw(st.integers(2, room + 1))
            ids = draw(st.lists(st.integers(1, 1000), min_size=length, max_size=length))
            mask = [False, *draw(st.lists(st.booleans(), min_size=length - 1, max_size=length - 1))]
            b.append(seq(ids, mask))
            room -= length - 1
        bins.append(b)
    return bins, pack_size


@given(case=random_bins())
@settings(max_examples=150, deadline=None)
def test_every_sequence_is_recoverable_from_its_row(case):
    bins, pack_size = case
    batch = collate_arrays(bins, pack_size=pack_size, pad_id=0)
    for row, b in enumerate(bins):
        ends = batch["cu_seqlens"][row, : batch["cu_seqlens_argmin"][row]]
        assert ends[0] == 0 and ends[-1] == pack_size
        for k, (ids, mask) in enumerate(b):
            start, end = ends[k], ends[k + 1]
            assert batch["tokens"][row, start:end].tolist() == ids[:-1].tolist()
            assert batch["labels"][row, start:end].tolist() == ids[1:].tolist()
            assert batch["loss_mask"][row, start:end].tolist() == mask[1:].tolist()
            assert batch["position_ids"][row, start:end].tolist() == list(range(end - start))
        used = sum(len(ids) - 1 for ids, _ in b)
        assert len(ends) - 1 == len(b) + (used < pack_size)
        assert not batch["loss_mask"][row, used:].any()
        assert (batch["labels"][row, used:] == 0).all()
        mask = block_causal_mask(batch["cu_seqlens"][row])
        segment = np.searchsorted(ends, np.arange(pack_size), side="right")
        for i in range(pack_size):
            assert mask[i].nonzero()[0].tolist() == [j for j in range(i + 1) if segment[j] == segment[i]]


def test_dataloader_end_to_end(tmp_path):
    samples = [TokenizedSample(list(range(1, n + 1)), [False] + [True] * (n - 1)) for n in (3, 4, 5, 6, 7, 8)]
    bins = [[0, 5], [1, 4], [2, 3]]  # 2+7, 3+4, 4+5 positions
    write_prepared(tmp_path / "d", samples, bins=bins, pack_size=9, header={})
    dataset = BinDataset(tmp_path / "d")
    assert len(dataset) == 3 and dataset.pack_size == 9
    sampler = GlobalBatchSampler(len(dataset), 2, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=Collator(pack_size=9))
    batches = list(loader)
    assert len(batches) == 1
    batch = batches[0]
    assert batch["tokens"].dtype == torch.int64 and batch["loss_mask"].dtype == torch.float32
    assert batch["tokens"].shape == (2, 9)
    assert batch["cu_seqlens"].dtype == torch.int32
    # all trained: every label position of every sequence; only padding is masked
    assert batch["loss_mask"].sum().item() == sum(
        len(samples[i].input_ids) - 1 for b in sampler.global_batch(0, 0) for i in bins[b])


def test_data_modules_work_without_torch(tmp_path):
    # preparing data must not need torch: block it and use everything but Collator
    code = f"""
import sys
sys.modules["torch"] = None
from sft_data.dataset import BinDataset, collate_arrays
from sft_data.packing.algorithms import BUILTIN_ALGORITHMS
from sft_data.packing.plan import pack_samples
from sft_data.sampler import GlobalBatchSampler
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample
samples = [TokenizedSample([1, 2, 3], [False, True, True]) for _ in range(4)]
bins, _ = pack_samples(samples, 4, BUILTIN_ALGORITHMS[0])
write_prepared({str(tmp_path / "d")!r}, samples, bins=bins, pack_size=4, header={{}})
dataset = BinDataset({str(tmp_path / "d")!r})
batch = collate_arrays([dataset[i] for i in next(iter(GlobalBatchSampler(len(dataset), 2)))], pack_size=4)
print(batch["loss_mask"].sum())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8"


class TinyLM(torch.nn.Module):
    """Token + learned position embeddings, one attention layer, an LM head."""

    def __init__(self, vocab=50, width=16, max_len=32):
        super().__init__()
        torch.manual_seed(0)
        self.tok = torch.nn.Embedding(vocab, width)
        self.pos = torch.nn.Embedding(max_len, width)
        self.layer = torch.nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens, position_ids, allowed):
        hidden = self.layer(self.tok(tokens) + self.pos(position_ids), src_mask=~allowed)
        return self.head(hidden)


@torch.no_grad()
def test_packed_row_gives_each_sequence_its_own_losses():
    model = TinyLM().eval()
    sequences = [seq([3, 4, 5, 6, 7], [0, 0, 1, 1, 1]), seq([8, 9, 10], [0, 1, 1]), seq([11, 12, 13, 14], [0, 0, 0, 1])]
    batch = Collator(pack_size=12)([sequences])
    allowed = torch.from_numpy(block_causal_mask(batch["cu_seqlens"][0].numpy()))
    logits = model(batch["tokens"], batch["position_ids"], allowed)
    packed = torch.nn.functional.cross_entropy(logits[0], batch["labels"][0], reduction="none")
    trained = batch["loss_mask"][0].bool()
    alone = []
    for ids, mask in sequences:
        single = Collator()([[(ids, mask)]])
        n = len(ids) - 1
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        out = model(single["tokens"][:, :n], single["position_ids"][:, :n], causal)
        losses = torch.nn.functional.cross_entropy(out[0], single["labels"][0, :n], reduction="none")
        alone.append(losses[single["loss_mask"][0, :n].bool()])
    torch.testing.assert_close(packed[trained], torch.cat(alone), rtol=1e-5, atol=1e-6)
    # the token-weighted mean over the bin equals that of the sequences run one by one
    torch.testing.assert_close(packed[trained].mean(), torch.cat(alone).mean())
