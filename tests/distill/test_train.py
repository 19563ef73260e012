"""agentkd train end to end on a toy corridor env: overfitting, resume, CLI, LoRA, KD."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from agent.cli import main
from agent.prompt import parse_completion
from distill import data, losses
from distill.student import build_student, load_student, read_meta
from distill.tokenizer import train_tokenizer
from distill.train import TrainConfig, train
from distill.validate import evaluate_batches
from tests.distill.test_data import toy_episode, write_traces

SEEDS = (2, 8, 12, 14, 16, 18)  # episodes of 2-4 steps


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return write_traces(tmp_path_factory.mktemp("tr") / "toy.jsonl", [toy_episode(s) for s in SEEDS])


def _cfg(traces, out, **kw):
    base = dict(traces=str(traces), student="nano", out=str(out), steps=40, batch_size=8, lr=3e-3,
                warmup=5, eval_every=20, val_frac=0.0, vocab_size=400, progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_tiny_student_overfits_to_every_action(traces, tmp_path):
    best = train(_cfg(traces, tmp_path / "run", steps=200, lr=3e-3, batch_size=4, eval_every=200))
    model, tok, meta = load_student(best)
    assert meta["prompt_variant"] == "compact" and meta["preset"] == "nano"
    assert str(traces) in meta["trace_hashes"] and meta["train_config"]["steps"] == 200
    examples = data.build_examples(data.load_episodes([traces]), "compact")
    enc = [data.encode(e, tok) for e in examples]
    metrics = evaluate_batches(model, enc, tok.pad_token_id, 8, tok)
    assert metrics["val_action_acc"] == metrics["val_tf_action_acc"] == 1.0
    # Greedy decoding through transformers reproduces the teacher's action and stops at <|end|>.
    for e in examples:
        ids = torch.tensor([tok.encode(e.prompt, add_special_tokens=False)])
        out = model.generate(ids, max_new_tokens=40, do_sample=False, eos_token_id=tok.eos_token_id)
        text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert parse_completion(text)[1] == e.action


def test_resume_gives_the_same_weights(traces, tmp_path):
    kw = dict(steps=6, batch_size=4, eval_every=100)  # 4-example batches: crosses epochs
    train(_cfg(traces, tmp_path / "a", **kw))
    train(_cfg(traces, tmp_path / "b", stop_after=3, **kw))
    assert read_meta(tmp_path / "b" / "last")["step"] == 3
    train(_cfg(traces, tmp_path / "b", resume=True, **kw))
    a = load_file(tmp_path / "a" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(tmp_path / "b" / "best" / "model.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a) or read_meta(tmp_path / "b" / "best")["step"] == 6


def test_resume_refuses_other_options_or_changed_traces(traces, tmp_path):
    kw = dict(steps=6, batch_size=4, eval_every=100)
    copy = tmp_path / "toy.jsonl"
    copy.write_bytes(traces.read_bytes())
    train(_cfg(copy, tmp_path / "b", stop_after=3, **kw))
    with pytest.raises(ValueError, match=r"--lr 0.003, this call gives --lr 0.001.*fresh --out"):
        train(_cfg(copy, tmp_path / "b", resume=True, **{**kw, "lr": 1e-3}))
    with pytest.raises(ValueError, match=r"--rename-entities False.*--rename-entities True"):
        train(_cfg(copy, tmp_path / "b", resume=True, rename_entities=True, **kw))
    lines = copy.read_text().splitlines()
    copy.write_text("\n".join(lines[:-1]) + "\n")  # one episode fewer
    with pytest.raises(ValueError, match=r"toy.jsonl changed since the interrupted run"):
        train(_cfg(copy, tmp_path / "b", resume=True, **kw))
    assert read_meta(tmp_path / "b" / "last")["step"] == 3  # nothing was trained or overwritten
    copy.write_text("\n".join(lines) + "\n")
    saved = (tmp_path / "b" / "train_config.json").read_text()
    (tmp_path / "b" / "train_config.json").write_text(saved[:20])  # cut short
    with pytest.raises(ValueError, match=r"train_config.json is not the JSON a run writes"):
        train(_cfg(copy, tmp_path / "b", resume=True, **kw))
    (tmp_path / "b" / "train_config.json").write_text('"lr"')  # JSON, but not the options
    with pytest.raises(ValueError, match=r"train_config.json is not the JSON a run writes.*got str"):
        train(_cfg(copy, tmp_path / "b", resume=True, **kw))
    old = {k: v for k, v in json.loads(saved).items() if k != "rename_from"}  # before the option
    (tmp_path / "b" / "train_config.json").write_text(json.dumps({**old, "rename_entities": True}))
    with pytest.raises(ValueError, match=r"--rename-from 'letters', this call gives --rename-from 'pieces'"):
        train(_cfg(copy, tmp_path / "b", resume=True, rename_entities=True, **kw))
    before_prompt_weight = {k: v for k, v in old.items() if k != "prompt_weight"}  # a run from before it
    (tmp_path / "b" / "train_config.json").write_text(json.dumps(before_prompt_weight))
    with pytest.raises(ValueError, match=r"--prompt-weight 0.0, this call gives --prompt-weight 0.5"):
        train(_cfg(copy, tmp_path / "b", resume=True, prompt_weight=0.5, **kw))
    # options that leave the weights alone may change: validation cadence, the progress bar,
    # and where names would come from in a run that renames none
    train(_cfg(copy, tmp_path / "b", resume=True,
               **{**kw, "eval_every": 2, "val_greedy_max": 8, "rename_from": "letters"}))
    assert read_meta(tmp_path / "b" / "last")["step"] == 6


def test_bf16_mixed_precision_learns_keeps_fp32_weights_and_resumes(traces, tmp_path):
    kw = dict(steps=6, batch_size=4, eval_every=100, mixed_precision="bf16")
    train(_cfg(traces, tmp_path / "a", **kw))
    train(_cfg(traces, tmp_path / "b", stop_after=3, **kw))
    train(_cfg(traces, tmp_path / "b", resume=True, **kw))
    a = load_file(tmp_path / "a" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "last" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in a.values())  # saved and exported as fp32
    assert all(torch.equal(a[k], b[k]) for k in a)
    fp32 = load_file(train(_cfg(traces, tmp_path / "c", steps=6, batch_size=4, eval_every=100)).parent
                     / "last" / "model.safetensors")
    assert any(not torch.equal(a[k], fp32[k]) for k in a)  # autocast really ran in bf16
    # it learns like fp32: the same 6 steps bring the loss from ln(vocab) ~ 6 to about where
    # fp32 gets (bf16 rounding moves it a little, not a lot)
    bf16_loss = read_meta(tmp_path / "a" / "last")["metrics"]["train_loss"]
    fp32_loss = read_meta(tmp_path / "c" / "last")["metrics"]["train_loss"]
    assert bf16_loss < 0.8 * math.log(400) and abs(bf16_loss - fp32_loss) < 0.1 * fp32_loss
    with pytest.raises(ValueError, match="--mixed-precision: expected 'no' or 'bf16', got 'fp16'"):
        train(_cfg(traces, tmp_path / "d", mixed_precision="fp16"))


def test_cli_end_to_end_and_errors(traces, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--traces", str(traces), "--student", "nano", "--out", str(out), "--steps", "4",
               "--batch-size", "4", "--vocab-size", "400", "--val-frac", "0.34", "--eval-every", "2",
               "--no-progress", "--action-weight", "2", "--rationale-weight", "0.5"])
    assert rc == 0
    assert "best student" in capsys.readouterr().out
    meta = read_meta(out / "best")
    assert {"val_loss", "val_action_acc", "tokens_per_s"} <= set(meta["metrics"])
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["train", "--traces", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().out.strip()
    assert "no episodes" in err and len(err.splitlines()) == 1
    assert main(["train", "--traces", str(traces), "--kd", "forward", "--out", str(tmp_path / "y")]) == 2
    assert "top-k log-probabilities" in capsys.readouterr().out


def _prompt_ce(run, traces) -> float:
    """The student's mean next-token loss on the prompts' own tokens of the training data."""
    model, tok, _ = load_student(run / "last")
    batch = data.collate([data.encode(e, tok) for e in data.build_examples(data.load_episodes([traces]), "compact")],
                         tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(losses.weighted_ce(logits[:, :-1], batch["input_ids"][:, 1:], batch["prompt_mask"][:, 1:].float()))


def test_prompt_weight_teaches_the_observations_too(traces, tmp_path, capsys):
    """--prompt-weight adds a loss on the prompt's own tokens: from the same start and data
    the student predicts the observations far better, is saved with the run, and a negative
    value is a one-line error."""
    args = ["train", "--traces", str(traces), "--student", "nano", "--steps", "30", "--batch-size", "4",
            "--lr", "3e-3", "--vocab-size", "400", "--val-frac", "0", "--eval-every", "30", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ce")]) == 0
    assert main([*args, "--out", str(tmp_path / "pw"), "--prompt-weight", "1"]) == 0
    assert read_meta(tmp_path / "pw" / "last")["train_config"]["prompt_weight"] == 1.0
    plain, weighted = _prompt_ce(tmp_path / "ce", traces), _prompt_ce(tmp_path / "pw", traces)
    assert weighted < 0.5 * plain, (plain, weighted)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--prompt-weight", "-0.1"]) == 2
    err = capsys.readouterr().out.strip()
    assert "--prompt-weight" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("option,value,saved,bad", [
    ("--focal-gamma", "2", 2.0, [(["-1"], "--focal-gamma"), (["nan"], "--focal-gamma")]),
    ("--recall-lines", "2", 2, [(["-1"], "--recall-lines: expected an int >= 0"),
                                (["2", "--kd", "forward"], "--recall-lines with --kd")]),
])
def test_a_loss_option_through_the_cli(traces, tmp_path, capsys, option, value, saved, bad):
    """--focal-gamma and --recall-lines each train other weights than the same run without
    them, are saved with the run, and a bad value is a one-line error before any work."""
    args = ["train", "--traces", str(traces), "--student", "nano", "--steps", "3", "--batch-size", "4",
            "--vocab-size", "400", "--val-frac", "0", "--eval-every", "3", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "with"), option, value]) == 0
    assert read_meta(tmp_path / "with" / "last")["train_config"][option[2:].replace("-", "_")] == saved
    a = load_file(tmp_path / "plain" / "last" / "model.safetensors")
    b = load_file(tmp_path / "with" / "last" / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    for rest, says in bad:
        assert main([*args, "--out", str(tmp_path / "bad"), option, *rest]) == 2
        err = capsys.readouterr().out.strip()
        assert says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def checkpoint(traces, tmp_path_factory):
    """A tiny pretrained-style checkpoint: a Llama and its tokenizer, no agentkd.json."""
    exs = data.build_examples(data.load_episodes([traces]), "full")
    tok = train_tokenizer([e.prompt + e.completion for e in exs], vocab_size=400)
    model = build_student("nano", len(tok), seed=7)
    path = tmp_path_factory.mktemp("ckpt") / "base"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_lora_on_a_checkpoint_is_merged(traces, checkpoint, tmp_path):
    best = train(_cfg(traces, tmp_path / "lora", student=str(checkpoint), lora=True, lora_r=4, steps=6,
                      eval_every=6, lr=1e-2))
    meta = read_meta(best)
    assert meta["prompt_variant"] == "full" and meta["base"] == str(checkpoint)
    tuned = load_file(best / "model.safetensors")
    base = load_file(checkpoint / "model.safetensors")
    assert tuned.keys() == base.keys()  # a plain Llama: no adapter tensors
    assert not torch.equal(tuned["model.layers.0.self_attn.q_proj.weight"],
                           base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(tuned["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


def test_kd_online_teacher_and_from_trace_topk(traces, checkpoint, tmp_path):
    # Online: the checkpoint teaches a fine-tuned copy of itself.
    train(_cfg(traces, tmp_path / "kd", student=str(checkpoint), kd="jsd", teacher=f"hf:{checkpoint}",
               steps=2, eval_every=2))
    assert read_meta(tmp_path / "kd" / "last")["train_config"]["kd"] == "jsd"
    # A teacher with another vocabulary is refused with a clear message.
    other = tmp_path / "other"
    tok2 = train_tokenizer(["something else entirely"] * 5, vocab_size=300)
    build_student("nano", len(tok2)).save_pretrained(other)
    tok2.save_pretrained(other)
    with pytest.raises(ValueError, match="vocabulary"):
        train(_cfg(traces, tmp_path / "kd2", student=str(checkpoint), kd="forward", teacher=f"hf:{other}"))
    # From the traces: top-k log-probabilities written with the checkpoint's tokenizer.
    _, tok, _ = load_student(checkpoint)
    eps = data.load_episodes([traces])
    for ep in eps:
        for st in ep.steps:
            ids = tok.encode(f"Thought: {st.rationale}\nAction: {st.action}", add_special_tokens=False)
            st.top_logprobs = [{tok.decode([i]): -0.05, tok.decode([5]): -3.0} for i in ids]
    kd_traces = write_traces(tmp_path / "kd.jsonl", eps)
    train(_cfg(kd_traces, tmp_path / "kd3", student=str(checkpoint), kd="forward", steps=2, eval_every=2))
    assert read_meta(tmp_path / "kd3" / "last")["step"] == 2


def test_selection_key_prefers_loss_unless_told():
    from distill.validate import selection_key
    degenerate = {"val_loss": 0.9, "val_action_acc": 0.73}  # answers the commonest action everywhere
    learned = {"val_loss": 0.3, "val_action_acc": 0.70}
    assert selection_key("loss", learned, 500) > selection_key("loss", degenerate, 250)
    assert selection_key("action_acc", degenerate, 250) > selection_key("action_acc", learned, 500)
    assert selection_key("loss", {}, 9) > selection_key("loss", {}, 8)  # no validation: latest


def test_best_checkpoint_has_the_lowest_validation_loss(traces, tmp_path):
    import json
    out = tmp_path / "sel"
    train(_cfg(traces, out, steps=12, eval_every=3, val_frac=0.34, val_greedy_max=2))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4
    assert read_meta(out / "best")["step"] == min(log, key=lambda m: (m["val_loss"], -m["step"]))["step"]
