"""Bad input never produces a traceback: one line saying what was wrong (and what to do), exit 2.

A table of hostile and mistaken inputs, each run through the real entry point in-process; plus
corrupted run directories given to ``eval`` and ``--teacher``. Every case must print exactly one
line on stderr, exit 2, and leave nothing behind.
"""

from __future__ import annotations

import os

import pytest
import torch

import losscli.cli as cli
from tests.cli_helpers import SYN, one_line_exit_2
from tests.cli_helpers import invoke as _invoke

cli._register_commands()
_one_line_exit_2 = one_line_exit_2

TRAIN_CASES = [
    (["--loss", "focal(reduction=none)"], "reduction"),
    (["--loss", "ce(weight=[1,2])"], "weight has 2 entries"),
    (["--loss", "ce(ignore_index=abc)"], "ignore_index"),
    (["--loss", "focal(gamma=2,gamma=3)"], "twice"),
    (["--loss", ""], "empty loss spec"),
    (["--loss", "focal(gamma=nan)"], "gamma"),
    (["--loss", "a" + " " * 20000 + "b"], "too long"),
    (["--set", "train.eval_every=0"], "train.eval_every"),
    (["--set", "train.step_milestones=[a]"], "train.step_milestones"),
    (["--set", "train.momentum=-1"], "train.momentum"),
    (["--set", "train.step_gamma=-5"], "train.step_gamma"),
    (["--set", "train.lr=.inf"], "train.lr"),
    (["--set", "train.weight_decay=.nan"], "train.weight_decay"),
    (["--set", "train.nope=1"], "unknown config key"),
    (["--set", "=1"], "empty name"),
    (["--set", "train..lr=1"], "empty part"),
    (["--set", "dataset.val_fraction=1.5"], "val_fraction"),
    (["--set", "precision=fp8"], "precision"),
    (["--set", "threads=0"], "threads"),
    (["--noise", "none,none"], "noise"),
    (["--noise", "sym:0.2,sym:0.4"], "one noise setting"),
    (["--epochs", "abc"], "epochs"),
    (["--nope"], "no such option"),
    (["extra"], "unexpected extra argument"),
    (["--preset", "nope"], "unknown preset"),
    # found by the audit of issue 10 (these exited 1 with raw exception text, or failed mid-run)
    (["--set", "train.lr=2020-13-45"], "cannot read value"),
    (["--set", "train.lr=" + "9" * 5000], "cannot read value"),
    (["--loss", "focal(gamma=" + "9" * 5000 + ")"], "cannot read value"),
    (["--loss", "ce(weight=[0,0,0])"], "positive entry"),
    (["--set", "dataset.options.separation=nan"], "separation"),
    (["--set", "dataset.options.seed=abc"], "seed"),
    (["--set", "dataset.options.n_train=100000000000"], "too many"),
    # found by the hostile pass of the hostile branch (exit 1 with raw text, a kill, a hang, or ignored)
    (["--seed", str(2**70), "--noise", "sym:0.4"], "32-bit seed"),  # ValueError: Overflow when unpacking long
    (["--seed", "-1"], "32-bit seed"),
    (["--set", f"dataset.split_seed={2**70}"], "dataset.split_seed"),
    (["--lr", "1e300"], "train.lr"),  # RuntimeError: value cannot be converted to type float without overflow
    (["--set", "threads=1000000"], "threads"),  # MemoryError
    (["--set", "model.options.hidden=abc"], "positive integer"),  # int()'s ValueError
    (["--set", "model.options.hidden=[1]"], "positive integer"),  # int()'s TypeError
    (["--set", "model.options.depth=1000000"], "at most 1000"),  # minutes building a million layers
    (["--set", "model.options.hidden=1000000000"], "memory"),  # 37 s allocating, then the allocator's error
    (["--tracking-uri", "somewhere"], "without --tracker"),  # ignored: nothing logged where the user looked
    (["--loss", "torch.nn:MSELoss"], "fails on a batch"),  # exit 1 in the first step, torch's warning too
    (["--loss", "ce + 0.5*torch.nn:MSELoss"], "fails on a batch"),
    (["--teacher", "."], "does not distil"),  # recorded in config.yaml and ignored
    # leftovers of the hostile pass
    (["--loss", "focal(gamma=)"], "value for 'gamma' is empty; write a value, as in focal(gamma=2)"),  # "cannot be None"
    (["--loss", "ce + 0.5*focal(gamma= )"], "value for 'gamma' is empty"),
    (["--loss", "ce(weight=)"], "value for 'weight' is empty"),  # "got None"
    (["--loss", "focal", "--param", "gamma="], "value for 'gamma' is empty"),
    (["--epochs", str(10**12)], "train.epochs"),  # accepted: ran for ever
    # unbounded above: accepted without a word, or an infinite step count (exit 1)
    (["--batch-size", str(10**12)], "train.batch_size"),
    (["--set", f"train.batch_size={10**30}"], "must be in [1, 10000000]"),
    (["--set", f"train.warmup_epochs={10**12}"], "train.warmup_epochs"),  # a learning rate of ~0 throughout
    (["--set", "train.warmup_epochs=1e308", "--batch-size", "8"], "must be in [0, 100000]"),  # OverflowError
    (["--epochs", "2", "--set", "train.warmup_epochs=3"], "must be at most train.epochs (2"),  # never at peak lr
    (["--set", f"train.eval_every={10**12}"], "train.eval_every"),
]


@pytest.mark.parametrize("extra,needle", TRAIN_CASES, ids=[str(i) for i in range(len(TRAIN_CASES))])
def test_train_bad_input(extra, needle, capsys, tmp_path):
    out = tmp_path / "run"
    _one_line_exit_2(["train", *SYN, "--out", str(out), *extra], capsys, needle)
    assert not out.exists()  # nothing created for input rejected up front


COMPARE_CASES = [
    (["--seeds", "0"], "seeds"),
    (["--set", "seeds=[]"], "empty list"),
    (["--set", "seeds=[0,0]"], "twice"),
    (["--set", "seeds=[1.5]"], "integers"),
    (["--jobs", "0"], "jobs"),
    (["--losses", "ce,focal,focal(gamma=2)"], "twice"),
    (["--losses", "ce,focl"], "did you mean"),
    (["--noise", "none,none"], "twice"),
    (["--noise", "none,sym:0"], "one setting (clean data) run twice"),  # both flip no label: trained twice
    (["--noise", "sym:0,pair:0.0"], "lists sym:0"),
    (["--baseline", "focal"], "baseline"),
    (["--test", "ttest"], "statistics.test"),
    (["--correction", "bonf"], "statistics.correction"),
    (["--alpha", "2"], "statistics.alpha"),
    (["--set", "losses=[1,2]"], "losses"),
    (["--executor", "nope"], "executor"),
    (["--losses", "ce,kd"], "teacher"),  # every kd run failed after the others had trained
    (["--losses", "ce,kd", "--teacher", "/nonexistent"], "not a directory"),
    (["--noise", ""], "'noise' is empty"),  # silently meant clean labels, as --loss '' meant ce
    (["--noise", ",,"], "'noise' is empty"),
    (["--imbalance", " "], "'imbalance' is empty"),
    # found by the hostile pass of the hostile branch
    (["--seeds", "10000000000"], "at most 10000"),  # MemoryError listing the seeds
    (["--set", f"seeds=[{2**70}]"], "32-bit seed"),
    (["--losses", "ce,gce,focal,mae,sce,rce", "--seeds", "10000", "--noise", "none,sym:0.2"], "at most 100000"),
    (["--min-effect", "1e300"], "statistics.min_effect"),  # no difference could ever reach it
    (["--tune", "1", "--set", "tune.lr_factor=1e300"], "tune.lr_factor"),  # tuned lr=1e-272 without a word
    (["--tune", "1", "--set", "tune.sampler_seed=-5"], "tune.sampler_seed"),  # Optuna's ValueError, exit 1
    (["--address", "10.0.0.1:6379"], "--executor ray"),  # ran locally: the user thought on the cluster
    (["--gpus-per-run", "0.5"], "--executor ray"),
    (["--storage", "sqlite:///x.db"], "--tune"),
    (["--tracking-uri", "somewhere"], "without --tracker"),
    (["--set", "gpus_per_run=.nan"], "finite number"),  # said "must be float"
    (["--losses", "ce,torch.nn:MSELoss"], "fails on a batch"),  # every run failed, with torch's warnings
    # leftovers of the hostile pass
    (["--executor", "local", "--jobs", "2"], "--executor pool"),  # ran one task at a time without a word
    (["--executor", "Local", "--jobs", "2"], "--executor pool"),
    (["--losses", "ce,focal(gamma=)"], "value for 'gamma' is empty"),
    (["--set", "losses=[ce, '(ce+focal)(weight=)']"], "value for 'weight' is empty"),
    (["--epochs", "100001"], "must be in [1, 100000]"),
    (["--tune", str(10**12)], "tune.trials"),  # accepted without bound
]


@pytest.mark.parametrize("extra,needle", COMPARE_CASES, ids=[str(i) for i in range(len(COMPARE_CASES))])
def test_compare_bad_input(extra, needle, capsys, tmp_path):
    out = tmp_path / "cmp"
    _one_line_exit_2(["compare", *SYN, "--losses", "ce,gce", "--seeds", "1", "--out", str(out), *extra], capsys, needle)
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())


def test_out_paths(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--out", str(a_file)], capsys, "is a file")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--out", str(tmp_path / ("x" * 300))], capsys,
                     "cannot write")
    under_file = a_file / "x"  # a parent that is a file: train, calibrate and profile exited 1 (or after measuring)
    _one_line_exit_2(["train", *SYN, "--out", str(under_file)], capsys, "cannot write")
    _one_line_exit_2(["calibrate", str(finished_run_dir(tmp_path)), "--out", str(under_file)], capsys, "cannot write")
    prof = ["profile", "--losses", "ce", "--batch", "8", "--classes", "3", "--device", "cpu", "--repeats", "1", "--quiet"]
    _one_line_exit_2([*prof, "--trace", str(under_file)], capsys, "cannot write")
    _one_line_exit_2([*prof, "--plot", str(under_file / "p.png")], capsys, "--plot")
    _one_line_exit_2([*prof, "--plot", str(tmp_path / "p.txt")], capsys, ".txt")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--out", str(ro / "c")], capsys, "cannot")


def finished_run_dir(tmp_path):
    """A directory calibrate accepts as a run (logits.pt only), made without training."""
    run = tmp_path / "cal-run"
    run.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    torch.save({"val_logits": torch.randn(20, 3, generator=g), "val_labels": torch.arange(20) % 3,
                "test_logits": torch.randn(20, 3, generator=g), "test_labels": torch.arange(20) % 3}, run / "logits.pt")
    return run


def test_presets_that_are_hostile(capsys, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nlosses: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n")
    _one_line_exit_2(["compare", "--preset", str(bomb)], capsys, "alias")
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 60 + "]" * 60 + "\n")
    _one_line_exit_2(["compare", "--preset", str(deep)], capsys, "nested")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _one_line_exit_2(["compare", "--preset", str(binary)], capsys, "UTF-8")
    for name, text in {"date.yaml": "train:\n  lr: 2020-13-45\n", "digits.yaml": f"train:\n  lr: {'9' * 5000}\n"}.items():
        bad = tmp_path / name  # YAML resolves these scalars, then cannot build them: exit 1 before
        bad.write_text(text)
        _one_line_exit_2(["compare", "--preset", str(bad)], capsys, "cannot be read")
        _one_line_exit_2(["presets", str(bad)], capsys, "cannot be read")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    _one_line_exit_2(["compare", "--preset", str(scalar)], capsys, "mapping")
    twice = tmp_path / "twice.yaml"  # YAML's last-one-wins silently dropped the first train: block
    twice.write_text("train:\n  epochs: 1\nlosses: [ce]\ntrain:\n  lr: 0.1\n")
    _one_line_exit_2(["compare", "--preset", str(twice)], capsys, "'train' twice (line 4)")
    nested = tmp_path / "nested.yaml"
    nested.write_text("train: {lr: 0.1, lr: 0.2}\n")
    _one_line_exit_2(["train", "--preset", str(nested)], capsys, "'lr' twice")
    # a section of the wrong type was replaced by a flag's section: the preset's error vanished
    for text in ("train: [1, 2]\n", "train: !!binary aGVsbG8=\n", "losses: {a: 1}\n"):
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text(text)
        _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--preset", str(wrong),
                          "--out", str(tmp_path / "w")], capsys, "preset")
        assert not (tmp_path / "w").exists()
    folder = tmp_path / "folder.yaml"
    folder.mkdir()  # said "not found"
    _one_line_exit_2(["presets", str(folder)], capsys, "is a directory")


def test_sizes_that_would_hang_or_exhaust_memory(capsys, tmp_path):
    # millions of bins hung calibrate; an N x C beyond the machine's memory measured every loss first
    _one_line_exit_2(["calibrate", str(finished_run_dir(tmp_path)), "--bins", "100000000"], capsys, "too many")
    _one_line_exit_2(["profile", "--losses", "ce", "--batch", "1000000000000", "--classes", "1000000000000",
                      "--device", "cpu", "--quiet"], capsys, "lower --batch or --classes")


def test_profile_sizes_and_seeds_that_failed_late(capsys, tmp_path):
    prof = ["profile", "--losses", "ce", "--batch", "8", "--classes", "3", "--device", "cpu", "--repeats", "1",
            "--warmup", "0", "--no-memory", "--quiet"]
    _one_line_exit_2([*prof, "--threads", "1000000"], capsys, "--threads")  # a segfault in torch's thread pool
    _one_line_exit_2([*prof, "--seed", str(2**70)], capsys, "32-bit seed")  # exit 1: "every configuration failed"
    _one_line_exit_2([*prof, "--linear-dim", "4", "--chunk-size", "0"], capsys, "--chunk-size")  # exit 1, each skipped
    # ignored without a word: no chunked layer is measured without --linear-dim
    _one_line_exit_2([*prof, "--chunk-size", "1024"], capsys, "--chunk-size 1024 applies only with --linear-dim")
    _one_line_exit_2([*prof, "--shape", "--chunk-size", "1024"], capsys, "applies only with --linear-dim")
    _one_line_exit_2([*prof, "--repeats", str(10**12)], capsys, "--repeats must be in [1, 100000]")  # ran for ever
    _one_line_exit_2([*prof, "--warmup", str(10**12)], capsys, "--warmup must be in [0, 100000]")
    _one_line_exit_2([*prof, "--linear-dim", "4", "--seed", str(2**70)], capsys, "32-bit seed")  # now read there
    # 2 TB per curve: every loss skipped, "(no rows)" and exit 0
    _one_line_exit_2(["profile", "--shape", "--losses", "ce", "--shape-classes", "1000000000", "--quiet"], capsys,
                     "at most 1000")
    code, _, err = _invoke(["profile", "--shape", "--losses", "kd", "--quiet"], capsys)  # nothing analysable
    assert code == 1 and "no loss could be analysed" in err and len(err.strip().splitlines()) == 1


PROFILE_MODE_CASES = [  # options the chosen mode does not read: silently ignored before
    (["--linear-dim", "4", "--compile"], "--compile does not apply to --linear-dim"),
    (["--linear-dim", "4", "--no-compile"], "--no-compile does not apply to --linear-dim"),
    (["--linear-dim", "4", "--trace", "{tmp}/tr"], "--trace {tmp}/tr does not apply to --linear-dim"),
    (["--linear-dim", "4", "--plot", "{tmp}/p.png"], "--plot {tmp}/p.png does not apply to --linear-dim"),
    (["--shape", "--batch", "8"], "--batch 8 does not apply to --shape"),
    (["--shape", "-c", "8"], "--classes 8 does not apply to --shape (the shape analysis uses --shape-classes)"),
    (["--shape", "--dtype", "float16"], "--dtype float16 does not apply to --shape (the shape analysis runs in float64)"),
    (["--shape", "--device", "cpu"], "--device cpu does not apply to --shape (the shape analysis runs on the CPU)"),
    (["--shape", "--compile"], "--compile does not apply to --shape"),
    (["--shape", "--repeats", "20"], "--repeats 20 does not apply to --shape"),  # the default, but given
    (["--shape", "-w", "3"], "--warmup 3 does not apply to --shape"),
    (["--shape", "--trace", "{tmp}/tr"], "does not apply to --shape (nothing is timed or traced)"),
    (["--shape", "--no-memory"], "--no-memory does not apply to --shape"),
    (["--shape", "--memory"], "--memory does not apply to --shape"),
    (["--shape", "--linear-dim", "8", "--chunk-size", "4"], "--linear-dim 8 does not apply to --shape"),
    (["--shape-classes", "7"], "--shape-classes 7 applies only with --shape"),
    (["--linear-dim", "4", "--shape-classes", "7"], "--shape-classes 7 applies only with --shape"),
    (["--linear-dim", "0"], "--linear-dim must be >= 1"),
]


@pytest.mark.parametrize("args,needle", PROFILE_MODE_CASES, ids=[str(i) for i in range(len(PROFILE_MODE_CASES))])
def test_profile_options_the_mode_does_not_read(args, needle, capsys, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _one_line_exit_2(["profile", "--losses", "ce", "--quiet", *args], capsys, needle.replace("{tmp}", str(tmp_path)))
    assert not (tmp_path / "tr").exists() and not (tmp_path / "p.png").exists()


def test_eval_paths_that_were_misread(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    _one_line_exit_2(["eval", str(a_file)], capsys, "is not a directory")  # said "does not exist"
    run = finished_run_dir(tmp_path)
    (run / "other.pt").write_bytes(b"")
    # any name but model.pt was ignored: the model.pt beside it was evaluated instead
    _one_line_exit_2(["eval", "--checkpoint", str(run / "other.pt")], capsys, "model.pt")
    _one_line_exit_2(["eval", "--checkpoint", str(a_file)], capsys, "model.pt")


def test_ray_address_where_nothing_answers(capsys, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "cmp"
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--executor", "ray", "--address",
                      f"127.0.0.1:{port}", "--out", str(out)], capsys, "nothing answers")
    assert not out.exists()  # refused before the compare directory was made
    from losscli.app.executors.ray_address import unreachable as _unreachable

    try:
        with socket.socket(socket.AF_INET6) as s:  # a listening IPv6 literal is reachable, brackets and all
            s.bind(("::1", 0))
            s.listen()
            assert _unreachable(f"[::1]:{s.getsockname()[1]}") is None
    except OSError:  # no IPv6 loopback on this machine
        pass
    # `auto` is resolved as Ray resolves it (RAY_ADDRESS first) and probed before anything is made
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert "nothing answers" in _unreachable("auto")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--executor", "ray", "--address", "auto",
                      "--out", str(out)], capsys, "nothing answers")
    assert not out.exists()


def test_losses_with_an_empty_parameter_value(capsys):
    # said "focal: parameter 'gamma' cannot be None"
    err = _one_line_exit_2(["losses", "focal(gamma=)"], capsys, "the value for 'gamma' is empty")
    assert "focal(gamma=2)" in err and "None" not in err
    err = _one_line_exit_2(["check-loss", "focal(gamma=)"], capsys, "the value for 'gamma' is empty")
    assert "focal(gamma=2)" in err
    # a plugin loss given by import path: its default too
    from losscli.losses import LOSSES

    try:
        _one_line_exit_2(["losses", "examples.custom_loss:SoftCappedCE(cap=)"], capsys,
                         "as in examples.custom_loss:SoftCappedCE(cap=4)")
    finally:  # importing the example registers its tempered_gce: later tests expect the built-in registry
        LOSSES.forget_plugins()
    _one_line_exit_2(["losses", "(ce + focal)(weight=)"], capsys, "(ce + focal)(weight=VALUE)")
    from losscli.lossspec import parse_assignments

    assert parse_assignments(["train.grad_clip="], what="--set") == {"train.grad_clip": None}  # --set: YAML's null
