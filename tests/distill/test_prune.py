"""Pruning a teacher into a student: exactness, shapes, kept weights, refusals, and the
pruned student through train (online KD), export and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agent.cli import main
from distill.prune import (
    activation_scores,
    check_widths,
    parse_layers,
    plan_pruning,
    prune_model,
    prune_student,
    resolve_prune_spec,
)
from distill.student import load_student, read_meta


def _ids(vocab: int, n: int = 12) -> torch.Tensor:
    return torch.arange(2 * n).remainder(vocab - 1).add(1).reshape(2, n)


def _random_llama(n_head: int = 4, n_kv: int = 4, layers: int = 3, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                         num_attention_heads=n_head, num_key_value_heads=n_kv, head_dim=16,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def expert_traces(tmp_path_factory) -> Path:
    """A few expert episodes of frozenlake-4x4 (the tiny teacher's env)."""
    import envs
    from agent.episode import run_episode
    from agent.policies import load_policy
    from distill.traces import TraceWriter

    path = tmp_path_factory.mktemp("prune_traces") / "traces.jsonl"
    with TraceWriter(path) as writer:
        for seed in envs.seeds("frozenlake-4x4", "train", 6):
            writer.write(run_episode(envs.make("frozenlake-4x4"), load_policy("expert"), seed))
    return path


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


# --------------------------------------------------------------------------- exactness
def test_nothing_removed_keeps_the_teachers_logits_exactly(tiny_student_dir, tmp_path):
    out = prune_student(tiny_student_dir, out_dir=tmp_path / "same")
    teacher, t_tok, t_meta = load_student(tiny_student_dir)
    student, s_tok, meta = load_student(out)
    ids = _ids(len(t_tok))
    assert torch.equal(_logits(teacher, ids), _logits(student, ids))
    assert s_tok.get_vocab() == t_tok.get_vocab() and s_tok.chat_template == t_tok.chat_template
    assert meta["prompt_variant"] == t_meta["prompt_variant"]
    assert meta["keep_layers"] == [0, 1] and meta["kept_heads"] == {"0": [0, 1, 2, 3], "1": [0, 1, 2, 3]}
    assert meta["kept_mlp"]["1"] == list(range(256)) and meta["pruned_from"] == str(Path(tiny_student_dir).resolve())
    assert meta["n_parameters"] == meta["teacher_parameters"]


def test_nothing_removed_is_exact_with_grouped_query_attention():
    teacher = _random_llama(n_head=4, n_kv=2)
    student = prune_model(teacher, plan_pruning(teacher, [0, 1, 2], 4, 96))
    assert torch.equal(_logits(teacher, _ids(97)), _logits(student, _ids(97)))


def test_cutting_dead_heads_and_channels_keeps_the_logits():
    """Heads that write nothing (zero o_proj columns) and channels with zero down_proj
    columns are the ones magnitude importance cuts, and cutting them changes no logit."""
    teacher = _random_llama()
    with torch.no_grad():
        for layer in teacher.model.layers:
            layer.self_attn.o_proj.weight[:, 16:32] = 0  # head 1
            layer.self_attn.o_proj.weight[:, 48:64] = 0  # head 3
            layer.mlp.down_proj.weight[:, 1::3] = 0  # 32 of 96 channels
    plan = plan_pruning(teacher, [0, 1, 2], 2, 64)
    assert plan.kept_heads == {i: [0, 2] for i in range(3)}
    assert plan.kept_mlp[0] == [j for j in range(96) if j % 3 != 1]
    student = prune_model(teacher, plan)
    torch.testing.assert_close(_logits(student, _ids(97)), _logits(teacher, _ids(97)), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- shapes and weights
def test_removing_layers_gives_the_expected_shapes_and_parameter_count(tiny_student_dir, tmp_path):
    out = prune_student(tiny_student_dir, keep_layers="1", n_heads=2, intermediate=128, block=32,
                        out_dir=tmp_path / "cut")
    student, tok, meta = load_student(out)
    teacher, _, _ = load_student(tiny_student_dir)
    v, h = len(tok), 256
    # embeddings + lm_head + final norm, then one layer: 2 norms, q/k/v/o at 2 heads x 64, MLP 128
    expected = v * h + v * h + h + (2 * h + 4 * (2 * 64) * h + 3 * 128 * h)
    assert sum(p.numel() for p in student.parameters()) == expected == meta["n_parameters"]
    c = student.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size,
            c.hidden_size) == (1, 2, 2, 64, 128, 256)
    attn = student.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (128, 256) and attn.o_proj.weight.shape == (256, 128)
    assert student.model.layers[0].mlp.down_proj.weight.shape == (256, 128)
    assert student(input_ids=_ids(v)).logits.shape == (2, 12, v)
    assert meta["keep_layers"] == [1] and list(meta["kept_heads"]) == ["1"] and len(meta["kept_mlp"]["1"]) == 128
    assert meta["teacher_parameters"] == sum(p.numel() for p in teacher.parameters())


def test_width_pruning_keeps_the_chosen_heads_weights_bit_identical(tiny_student_dir, tmp_path):
    out = prune_student(tiny_student_dir, keep_layers=[1], n_heads=2, intermediate=64, block=32,
                        out_dir=tmp_path / "w")
    student, _, meta = load_student(out)
    teacher, _, _ = load_student(tiny_student_dir)
    heads, chans = meta["kept_heads"]["1"], meta["kept_mlp"]["1"]
    assert len(heads) == 2 and heads == sorted(heads) and len(chans) == 64
    t, s = teacher.model.layers[1], student.model.layers[0]
    for i, h in enumerate(heads):
        rows, t_rows = slice(64 * i, 64 * i + 64), slice(64 * h, 64 * h + 64)
        for name in ("q_proj", "k_proj", "v_proj"):
            assert torch.equal(getattr(s.self_attn, name).weight[rows], getattr(t.self_attn, name).weight[t_rows])
        assert torch.equal(s.self_attn.o_proj.weight[:, rows], t.self_attn.o_proj.weight[:, t_rows])
    assert torch.equal(s.mlp.gate_proj.weight, t.mlp.gate_proj.weight[chans])
    assert torch.equal(s.mlp.up_proj.weight, t.mlp.up_proj.weight[chans])
    assert torch.equal(s.mlp.down_proj.weight, t.mlp.down_proj.weight[:, chans])
    assert torch.equal(s.input_layernorm.weight, t.input_layernorm.weight)
    assert torch.equal(student.lm_head.weight, teacher.lm_head.weight)


def test_activation_importance_cuts_the_silent_heads(tiny_student_dir, expert_traces, tmp_path):
    teacher, _, _ = load_student(tiny_student_dir)
    with torch.no_grad():
        for layer in teacher.model.layers:  # heads 0 and 2 attend to nothing: zero values
            layer.self_attn.v_proj.weight[0:64] = 0
            layer.self_attn.v_proj.weight[128:192] = 0
    scores = activation_scores(teacher, [[1, 2, 3, 4], [5, 6, 7]])
    assert scores[0][0][0] == 0 and scores[0][0][2] == 0 and scores[0][0][1] > 0
    assert plan_pruning(teacher, [0, 1], 2, 256, scores).kept_heads == {0: [1, 3], 1: [1, 3]}

    out = prune_student(tiny_student_dir, n_heads=2, block=32, importance="activation",
                        traces=str(expert_traces), n_samples=4, out_dir=tmp_path / "act")
    meta = read_meta(out)
    assert meta["importance"] == "activation" and meta["importance_traces"] == str(expert_traces)
    assert all(len(v) == 2 for v in meta["kept_heads"].values())


def test_resolve_prune_spec_reads_options_from_a_config(tiny_student_dir, tmp_path):
    class Cfg:
        out = str(tmp_path / "run")
        keep_layers = "0"
        heads = 0
        intermediate = 0

    out = resolve_prune_spec(f"prune:{tiny_student_dir}", Cfg())
    assert out == tmp_path / "run" / "pruned" and read_meta(out)["keep_layers"] == [0]
    with pytest.raises(ValueError, match="expected 'prune:PATH'"):
        resolve_prune_spec(str(tiny_student_dir), Cfg())


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("spec", "message"), [
    ("0,4", "layer index 4 is out of range; the teacher has 4 layers"),
    ("-1", "layer index -1 is out of range"),
    ("0,2,2", "layer 2 is listed twice"),
    ("2,0", "expected ascending indices"),
    ("0,x", "expected comma-separated integers"),
])
def test_bad_layer_lists_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layers(spec, 4)
    assert parse_layers("", 3) == [0, 1, 2] and parse_layers("0, 2", 3) == [0, 2]


def test_widths_that_do_not_divide_are_refused():
    small = LlamaConfig(hidden_size=512, intermediate_size=1280, num_attention_heads=8, num_key_value_heads=8,
                        head_dim=64)
    check_widths(small, 4, 512, 256)  # 4*64 = 256 and 512: fine for K-quants
    with pytest.raises(ValueError, match=r"--heads 3: .* 3\*64 = 192 is not a multiple of 256 .* \[4, 8\]"):
        check_widths(small, 3, 512, 256)
    check_widths(small, 3, 512, 32)  # 192 is fine for q8_0
    with pytest.raises(ValueError, match="--intermediate 640: expected a multiple of 256"):
        check_widths(small, 4, 640, 256)
    with pytest.raises(ValueError, match=r"--heads: expected 1\.\.8"):
        check_widths(small, 9, 512, 256)
    with pytest.raises(ValueError, match=r"--intermediate: expected 1\.\.1280"):
        check_widths(small, 4, 1536, 256)
    gqa = LlamaConfig(hidden_size=512, intermediate_size=512, num_attention_heads=8, num_key_value_heads=2,
                      head_dim=64)
    with pytest.raises(ValueError, match="groups 4 query heads per KV head .* expected a multiple of 4"):
        check_widths(gqa, 6, 512, 32)


def test_cli_prunes_and_refuses_with_one_line(tiny_student_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["prune", "--teacher", f"hf:{tiny_student_dir}", "--keep-layers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"pruned student: {out}" in printed and "--kd forward --teacher hf:" in printed
    assert json.loads((out / "agentkd.json").read_text())["keep_layers"] == [1]
    assert main(["prune", "--teacher", str(tiny_student_dir), "--keep-layers", "0,2", "--out", str(out)]) == 2
    assert "layer index 2 is out of range; the teacher has 2 layers" in capsys.readouterr().out
    assert main(["prune", "--teacher", str(tiny_student_dir), "--heads", "2", "--out", str(out)]) == 2
    assert "not a multiple of 256" in capsys.readouterr().out
    assert main(["prune", "--teacher", str(tiny_student_dir), "--intermediate", "200", "--block", "32",
                 "--out", str(out)]) == 2
    assert "--intermediate 200: expected a multiple of 32" in capsys.readouterr().out
    assert main(["prune", "--teacher", str(tiny_student_dir), "--importance", "activation",
                 "--out", str(out)]) == 2
    assert "expected --traces" in capsys.readouterr().out
    assert main(["prune", "--teacher", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "expected a model directory" in capsys.readouterr().out


# --------------------------------------------------------------------------- the pipeline
@pytest.mark.slow
def test_pruned_student_trains_with_kd_exports_and_runs(tiny_student_dir, expert_traces, tmp_path, capsys):
    pruned, run, gguf = tmp_path / "pruned", tmp_path / "run", tmp_path / "gguf"
    assert main(["prune", "--teacher", str(tiny_student_dir), "--keep-layers", "1", "--heads", "2",
                 "--intermediate", "128", "--block", "32", "--out", str(pruned)]) == 0
    variant = read_meta(pruned)["prompt_variant"]
    assert main(["train", "--student", str(pruned), "--prompt-variant", variant, "--kd", "forward",
                 "--teacher", f"hf:{tiny_student_dir}", "--traces", str(expert_traces), "--out", str(run),
                 "--steps", "3", "--batch-size", "4", "--warmup", "1", "--eval-every", "3",
                 "--no-progress"]) == 0
    meta = read_meta(run / "best")
    assert meta["base_meta"]["keep_layers"] == [1] and meta["train_config"]["kd"] == "forward"
    student, _, _ = load_student(run / "best")
    assert student.config.num_attention_heads == 2 and student.config.intermediate_size == 128

    # heads*head_dim (128) != hidden (256): the GGUF carries key_length and llama.cpp's
    # logits must still match (export refuses otherwise)
    assert main(["export", str(run / "best"), "--quant", "q8_0", "--out", str(gguf), "--n-states", "2",
                 "--max-new-tokens", "24"]) == 0
    assert (gguf / "student-q8_0.gguf").is_file()
    capsys.readouterr()
    assert main(["run", "--model", str(gguf / "student-q8_0.gguf"), "--env", "frozenlake-4x4",
                 "--episodes", "1", "--max-tokens", "24", "--no-render"]) == 0
    assert "step 1" in capsys.readouterr().out


def test_train_student_prune_spec_cuts_then_distils(tiny_student_dir, expert_traces, tmp_path):
    # `agentkd train --student prune:PATH`: the cut and the KD run in one command, and the
    # student trains on the teacher's own prompt variant without being told it.
    run = tmp_path / "run"
    assert main(["train", "--student", f"prune:{tiny_student_dir}", "--keep-layers", "1",
                 "--kd", "forward", "--teacher", f"hf:{tiny_student_dir}", "--traces", str(expert_traces),
                 "--out", str(run), "--steps", "2", "--batch-size", "4", "--warmup", "1",
                 "--eval-every", "2", "--val-greedy-max", "2", "--no-progress"]) == 0
    meta = read_meta(run / "best")
    assert meta["prompt_variant"] == read_meta(tiny_student_dir)["prompt_variant"]
    assert meta["base_meta"]["keep_layers"] == [1]
    student, _, _ = load_student(run / "best")
    assert student.config.num_hidden_layers == 1
    assert (run / "pruned" / "config.json").is_file()
