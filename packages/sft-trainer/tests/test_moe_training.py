"""Training a mixture-of-experts model: the router's load-balancing loss is logged and weighted as
configured, and a step's loss, aux loss and gradients do not depend on how its micro-batches are
spread over accumulation and data-parallel ranks, with or without expert parallelism."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sft_data.store import write_prepared
from sft_data.types import TokenizedSample

WORKER = Path(__file__).with_name("moe_step_worker.py")


def samples(n: int) -> list[TokenizedSample]:
    rng = np.random.default_rng(3)
    out = []
    for _ in range(n):
        length = int(rng.integers(8, 30))
        start = int(rng.integers(1, length - 1))
        out.append(TokenizedSample(rng.integers(5, 300, size=length).tolist(), [False] * start + [True] * (length - start)))
    return out


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """{layout: [rank results]}: GA=4 in one process (rows padded to a multiple of 16, or all to 64);
    on two processes GA=2 × DP=2 without and with EP=2, and GA=4 × TP=2 (sequence-parallel)."""
    out = tmp_path_factory.mktemp("moe-steps")
    write_prepared(out / "data", samples(8), bins=None, pack_size=None, header={})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), str(out / "data"), "8", "2", "64", "1x1", "1x2",
                               "2x1"],
                              env={**common, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "MASTER_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    env = {k: v for k, v in common.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    for name, fixed in (("alone", "0"), ("alone64", "64")):
        (out / name).mkdir()
        single = subprocess.run([sys.executable, str(WORKER), str(out / name), str(out / "data"), "8", "2", fixed, "1x1"],
                                env=env, capture_output=True, text=True, timeout=600)
        assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    for p in procs:
        log = p.communicate(timeout=600)[0]
        assert p.returncode == 0, log[-3000:]
    read = lambda path: json.loads(path.read_text())  # noqa: E731
    return {"ga4": [read(out / "alone" / "1x1-rank0.json")], "ga4-padded": [read(out / "alone64" / "1x1-rank0.json")],
            "dp2": [read(out / f"1x1-rank{r}.json") for r in range(2)],
            "dp2-ep2": [read(out / f"1x2-rank{r}.json") for r in range(2)],
            "tp2": [read(out / f"2x1-rank{r}.json") for r in range(2)]}


@pytest.mark.parametrize("layout", ["ga4-padded", "dp2", "dp2-ep2", "tp2"])
def test_loss_aux_loss_and_gradients_do_not_depend_on_the_layout(steps, layout):
    (ref,) = steps["ga4"]
    assert ref["aux"] > 0 and ref["trained"] > 0
    grads: dict[str, float] = {}
    for rank in steps[layout]:
        assert rank["trained"] == ref["trained"]
        assert abs(rank["loss"] - ref["loss"]) <= 1e-6
        assert abs(rank["aux"] - ref["aux"]) <= 1e-6
        grads.update(rank["grads"])  # under EP each rank reports its own experts; TP shards are left out
    assert grads.keys() <= ref["grads"].keys() and any(".router." in k and v > 0 for k, v in grads.items())
    if layout != "tp2":
        assert grads.keys() == ref["grads"].keys()
    for name, got in grads.items():
        want = ref["grads"][name]
        assert abs(got - want) <= 1e-5 * max(1.0, want), name


def test_a_run_logs_the_aux_loss_and_uses_the_configured_weight(tiny_nemo, train_config, tmp_path):
    from sft_data import load_tokenizer
    from sft_model import extract_tokenizer, read_config
    from sft_model.random_init import init_nemo
    from sft_trainer.run import train

    tok = extract_tokenizer(tiny_nemo, tmp_path / "tok")
    base = init_nemo("mixtral", tok, load_tokenizer(tok.files[0]).vocab_size, tmp_path / "moe.nemo", num_layers=2,
                     hidden_size=64, num_attention_heads=4, num_query_groups=2, encoder_seq_length=64)
    assert read_config(base).moe_aux_loss_coeff == 0.02
    result = train(train_config(base, tmp_path / "run", "trainer.sft.max_steps=2", "model.moe_aux_loss_coeff=0.5"))
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    aux = [r["train/moe_aux_loss"] for r in rows if "train/loss" in r]
    assert len(aux) == 2 and all(0.5 < a < 4 for a in aux)  # 1.0 is perfectly balanced routing
    assert read_config(result.nemo_path).moe_aux_loss_coeff == 0.5

