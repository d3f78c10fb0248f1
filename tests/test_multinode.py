"""`sft train` on two "nodes" as README's multi-node launch has it: two torchrun processes, one per
node (`--nnodes 2 --nproc-per-node 1 --node-rank 0|1`), meeting at a rendezvous on 127.0.0.1.
Rank 0 reports everything, rank 1 nothing (it would print only errors); the checkpoint records the
two-rank layout and the optimizer state sharded over both, and `sft inspect` says so."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_train_and_only_rank_zero_speaks(tiny_nemo, train_config, tmp_path):
    from click.testing import CliRunner
    from sft_cli.app import create_cli
    from sft_core import get_plugin_manager
    from sft_trainer.config.loading import dump_config

    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(train_config(
        tiny_nemo, run, "exp_manager.checkpoint_callback_params.save_nemo_on_train_end=false")))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    port = str(_port())
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                               "1", "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port,
                               "-m", "sft_cli", "train", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "OMP_NUM_THREADS": "1"})
             for node in (0, 1)]
    try:
        outputs = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    (out0, err0), (out1, err1) = outputs
    assert "finished at step 4" in out0 and "step 4: validation loss" in err0
    assert (out1, err1) == ("", "")

    checkpoints = sorted((run / "checkpoints").glob("megatron_gpt_sft--step=*"))
    assert [p.name[:29] for p in checkpoints] == ["megatron_gpt_sft--step=000002", "megatron_gpt_sft--step=000004"]
    shown = CliRunner().invoke(create_cli(get_plugin_manager()), ["inspect", str(checkpoints[-1]), "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.output)
    assert info["step"] == 4 and info["verifies"] is True
    assert info["topology"] == {"world_size": 2, "tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1,
                                "data_parallel_size": 2, "expert_model_parallel_size": 1}
    assert info["optimizer"]["sharded_over_data_parallel"] is True and info["optimizer"]["state_tensors"] > 0
    text = CliRunner().invoke(create_cli(get_plugin_manager()), ["inspect", str(checkpoints[-1])]).output
    assert "TP=1 PP=1 DP=2 (2 processes); resumes at any layout" in text
    assert "sharded over data-parallel ranks" in text and "resumable     yes" in text
    assert Path(info["path"]) == checkpoints[-1]
