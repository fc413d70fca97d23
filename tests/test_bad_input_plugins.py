"""Hostile plugins and list options, probed as a user would: each is one line on stderr, exit 2.

A plugin module that calls ``sys.exit()`` (or argparse) at import, or in its constructor, ended losscli
silently with the plugin's exit code (``train`` exit 0, no run, no message); an exception whose
``__str__`` raises was reported as losscli's own crash (exit 1).
"""

from __future__ import annotations

import pytest

from losscli.losses import LOSSES
from tests.cli_helpers import SYN, one_line_exit_2

PROFILE = ["profile", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--losses", "ce"]

PLUGINS = {
    "exits_on_import": "import sys\nsys.exit(3)\n",
    "exits_in_init": ("import sys\nfrom torch import nn\nclass Loss(nn.Module):\n    def __init__(self):\n"
                      "        super().__init__()\n        sys.exit(0)\n"),
    "unprintable": ("from torch import nn\nclass E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                    "class Loss(nn.Module):\n    def __init__(self):\n        super().__init__()\n        raise E()\n"),
    "unprintable_on_import": ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                              "raise E()\n"),
    # passes the probe batch, then exits during training
    "exits_in_forward": ("import sys\nimport torch.nn.functional as F\nfrom torch import nn\nclass Loss(nn.Module):\n"
                         "    calls = 0\n    def forward(self, logits, target):\n        Loss.calls += 1\n"
                         "        if Loss.calls > 2:\n            sys.exit(3)\n"
                         "        return F.cross_entropy(logits, target)\n"),
}


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    for name, code in PLUGINS.items():
        (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    LOSSES.forget_plugins()


@pytest.mark.parametrize("args, needle", [
    (["train", "--loss", "exits_on_import:Loss", *SYN], "importing exits_on_import failed: SystemExit: 3"),
    (["train", "--loss", "ce", *SYN, "--model", "exits_on_import:model"], "model 'exits_on_import:model'"),
    (["train", "--loss", "ce", *SYN, "--dataset", "exits_on_import:data"], "dataset 'exits_on_import:data'"),
    (["train", "--loss", "exits_in_init:Loss", *SYN], "exits_in_init:Loss: building it failed: SystemExit: 0"),
    (["compare", "--losses", "ce,exits_in_init:Loss", "--seeds", "1", *SYN], "building it failed: SystemExit"),
    (["train", "--loss", "unprintable:Loss", *SYN], "unprintable:Loss: building it failed: E"),
    (["check-loss", "unprintable_on_import:Loss"], "importing unprintable_on_import failed: E"),
])
def test_plugins_that_exit_or_cannot_describe_their_error(args, needle, plugins, capsys):
    one_line_exit_2(args, capsys, needle=needle)


@pytest.mark.parametrize("args, needle", [
    ([*PROFILE, "--batch", "8", "--classes", "4,4"], "--classes '4,4' lists 4 twice"),
    ([*PROFILE, "--batch", "1000,1k", "--classes", "4"], "--batch '1000,1k' lists 1000 twice"),
    ([*PROFILE, "--batch", "8", "--classes", "4", "--dtype", "float32,torch.float32"], "lists float32 twice"),
    (["compare", "--losses", "ce,ce(reduction=mean)", "--seeds", "1", *SYN], "remove reduction"),
    (["compare", "--losses", "ce,cross_entropy", "--seeds", "1", *SYN], "twice"),
    (["compare", "--noise", "sym:0.2,sym:0.20", "--seeds", "1", *SYN], "lists sym:0.2 twice"),
    (["compare", "--losses", "ce\uff0cgce", "--seeds", "1", *SYN], "cannot parse loss spec"),  # a fullwidth comma
    (["compare", "--losses", "ce,\uff46ocal", "--seeds", "1", *SYN], "cannot parse loss spec"),
    (["compare", "--losses", "ce,\u200b", "--seeds", "1", *SYN], "cannot parse loss spec"),  # a zero-width space
])
def test_duplicates_and_odd_characters_in_list_options(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(args, capsys, needle=needle)
    assert not any(tmp_path.iterdir())


def test_a_plugin_that_exits_in_forward_mid_run_is_a_failed_run(plugins, capsys):
    """It ended `train` silently with the plugin's exit code (3) after the probe batch had passed."""
    from tests.cli_helpers import invoke

    code, out, err = invoke(["train", "--loss", "exits_in_forward:Loss", *SYN, "--epochs", "2"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "exits_in_forward:Loss called sys.exit(3) in its forward" in lines[0]


@pytest.mark.parametrize("losses, extra, needle", [
    ("ce,exits_in_init:Loss", [], "building it failed: SystemExit"),
    ("ce,unprintable:Loss", [], "building it failed: E"),
    ("ce,exits_in_init:NoSuchLoss", [], "has no attribute 'NoSuchLoss'"),
    ("ce,no_such_module:Loss", [], "no module named 'no_such_module'"),
    ("ce,no_such_loss", [], "unknown loss 'no_such_loss'"),
    ("ce", ["--set", "no_such.key=1"], "unknown config key 'no_such'"),
    ("ce", ["--preset", "no_such_preset"], "unknown preset 'no_such_preset'"),
    ("ce", ["--set", "dataset.options.colour=1"], "unknown option 'colour'"),
])
def test_a_refused_compare_leaves_no_trace(losses, extra, needle, plugins, capsys):
    """A loss that failed to build (or data that could not load) left OUT/runs and OUT/.lock behind:
    the inputs are checked before the compare directory is created."""
    one_line_exit_2(["compare", "--losses", losses, "--seeds", "1", *SYN, *extra, "--out", "out"], capsys, needle=needle)
    assert not (plugins / "out").exists()


def test_a_refused_compare_keeps_finished_results_intact(plugins, capsys):
    """Into a directory with finished runs, a refused compare rewrote OUT/config.yaml for a grid it never ran."""
    from tests.cli_helpers import invoke

    code, _, err = invoke(["compare", "--losses", "ce", "--seeds", "1", *SYN, "--out", "out"], capsys)
    assert code == 0, err
    before = {p: p.read_bytes() for p in (plugins / "out").rglob("*") if p.is_file()}
    one_line_exit_2(["compare", "--losses", "ce,exits_in_init:Loss", "--seeds", "1", *SYN, "--out", "out"], capsys,
                    needle="building it failed")
    assert {p: p.read_bytes() for p in (plugins / "out").rglob("*") if p.is_file()} == before
