"""Fixtures shared by every package's tests: a tiny Llama .nemo and training configs for it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny_nemo(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama (GQA 4/2) with a SentencePiece tokenizer trained on the example corpus."""
    from sft_data import load_tokenizer
    from sft_data.tokenizers.training import train_sentencepiece
    from sft_model.init import init_nemo

    root = tmp_path_factory.mktemp("tiny-nemo")
    tok = train_sentencepiece([REPO / "examples/data/corpus.txt"], root / "tok.model", vocab_size=600)
    return init_nemo("llama", tok, load_tokenizer(tok).vocab_size, root / "tiny.nemo", num_layers=2, hidden_size=64,
                     num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128, encoder_seq_length=64)


@pytest.fixture(scope="session")
def train_config():
    """``train_config(nemo, run_dir, *overrides)``: a TrainConfig for a few CPU steps on the example data."""

    def build(nemo: Path, run_dir: Path, *overrides: str):
        from sft_trainer.config.loading import build_config

        return build_config({}, [
            f"model.restore_from_path={nemo}", f"exp_manager.explicit_log_dir={run_dir}",
            f"model.data.train_ds.file_path={REPO / 'examples/data/train.jsonl'}",
            f"model.data.validation_ds.file_path={REPO / 'examples/data/val.jsonl'}",
            "model.data.train_ds.max_seq_length=64", "model.data.validation_ds.max_seq_length=64",
            "trainer.precision=32", "model.micro_batch_size=4", "model.global_batch_size=8",
            "trainer.sft.max_steps=4", "trainer.sft.val_check_interval=2", "trainer.sft.limit_val_batches=1",
            "model.optim.lr=2e-3", "model.optim.sched.warmup_steps=0", "model.optim.sched.constant_steps=0",
            *overrides,
        ])

    return build


@pytest.fixture
def short_train_config(train_config):
    """``short_train_config(nemo, run_dir, *overrides)``: two steps, no checkpoints, no final .nemo."""
    return lambda nemo, run_dir, *overrides: train_config(
        nemo, run_dir, "model.global_batch_size=4", "trainer.sft.max_steps=2",
        "exp_manager.create_checkpoint_callback=false",
        "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false", *overrides)
