"""The README's quickstart config is valid and says what the README promises."""

from pathlib import Path

from sft_trainer.config import load_config

REPO = Path(__file__).resolve().parents[3]


def test_quickstart_config_loads():
    cfg = load_config(REPO / "examples" / "quickstart.yaml")
    assert cfg.model.restore_from_path == "runs/tiny.nemo"
    assert cfg.exp_manager.explicit_log_dir == "runs/quickstart"
    assert cfg.model.data.train_ds.prompt_template == "Q: {input}\nA: {output}"
    assert (REPO / cfg.model.data.train_ds.file_path).is_file()
    assert (REPO / cfg.model.data.validation_ds.file_path).is_file()
