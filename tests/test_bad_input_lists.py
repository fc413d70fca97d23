"""Comma list options: an empty item (``ce,,gce``, a leading or trailing comma, a blank item) is one
line naming the option and the item's position, exit 2. It was dropped silently: ``--losses ce,,gce``
compared two losses where a third was meant (a value lost to an unset shell variable, a typo)."""

from __future__ import annotations

import pytest

from losscli.errors import UsageError
from losscli.lossspec import EmptyItemError, split_list
from tests.cli_helpers import invoke, one_line_exit_2

PROFILE = ["profile", "--repeats", "1", "--warmup", "0", "--batch", "8", "--classes", "4", "--device", "cpu"]


@pytest.mark.parametrize("text, position, hint", [
    ("ce,,gce", 2, ""),
    ("ce,", 2, " (a trailing comma)"),
    (",ce", 1, " (a leading comma)"),
    ("ce, ,gce", 2, ""),
    ("ce,focal(gamma=2,alpha=[1,2]),,gce", 3, ""),
])
def test_split_list_names_the_empty_item(text, position, hint):
    with pytest.raises(EmptyItemError) as err:
        split_list(text, "--losses")
    assert str(err.value) == (f"--losses: item {position} of {text!r} is empty{hint}; remove the extra comma or write "
                              "the missing item")


def test_split_list_keeps_brackets_and_leaves_an_empty_list_to_the_caller():
    assert split_list(" ce , focal(gamma=2,alpha=[1,2]) ", "x") == ["ce", "focal(gamma=2,alpha=[1,2])"]
    assert split_list("a(b,c)", "x", brackets=False) == ["a(b", "c)"]  # column names: no bracket grouping
    assert split_list("", "x") == split_list(",,", "x") == split_list(" , ", "x") == []


@pytest.mark.parametrize("args, needle", [
    (["compare", "--losses", "ce,,gce"], "config key 'losses' (--losses): item 2 of 'ce,,gce' is empty"),
    (["compare", "--losses", "ce,gce,"], "item 3 of 'ce,gce,' is empty (a trailing comma)"),
    (["compare", "--losses", ",ce"], "item 1 of ',ce' is empty (a leading comma)"),
    (["compare", "--losses", "ce,  ,gce"], "(--losses): item 2"),
    (["compare", "--noise", "none,,sym:0.2"], "config key 'noise' (--noise): item 2"),
    (["compare", "--imbalance", "none,exp:10,"], "config key 'imbalance' (--imbalance): item 3"),
    (["compare", "--set", "losses=ce,,gce"], "config key 'losses' (--losses): item 2"),
    (["compare", "--set", "seeds=0,,1"], "config key 'seeds': item 2 of '0,,1' is empty"),
    (["compare", "--set", "train.step_milestones=0.5,,0.75"], "config key 'train.step_milestones': item 2"),
    (["train", "--loss", "ce", "--noise", "none,"], "config key 'noise' (--noise): item 2"),
    (["compare", "--noise", ",,"], "'noise' is empty"),  # nothing at all: the option is empty, as before
    ([*PROFILE, "--losses", "ce,,focal"], "--losses: item 2 of 'ce,,focal' is empty"),
    ([*PROFILE[:5], "--batch", "8,", "--classes", "4"], "--batch: item 2 of '8,' is empty (a trailing comma)"),
    ([*PROFILE[:7], "--classes", ",4"], "--classes: item 1 of ',4' is empty (a leading comma)"),
    ([*PROFILE, "--dtype", "float32,,bfloat16"], "--dtype: item 2"),
    (["profile", "--shape", "--losses", "ce,"], "--losses: item 2"),
])
def test_an_empty_item_in_a_list_option_is_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(args, capsys, needle=needle)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_calibration_methods_and_feature_columns(tmp_path, capsys):
    from losscli.calibrate import resolve_methods
    from losscli.data.tabular import parse_feature_option

    with pytest.raises(UsageError, match=r"--methods: item 2 of 'temperature,,vector' is empty"):
        resolve_methods("temperature,,vector")
    assert resolve_methods("temperature, vector,temperature") == ["temperature", "vector"]
    with pytest.raises(UsageError, match=r"t.csv: feature_columns: item 3 of 'a,b,' is empty \(a trailing comma\)"):
        parse_feature_option("a,b,", "t.csv")
    assert parse_feature_option("len(cm), b", "t.csv") == ["len(cm)", "b"]
    code, _, err = invoke(["calibrate", str(tmp_path), "--methods", ",temperature"], capsys)
    assert code == 2 and "--methods: item 1" in err and len(err.strip().splitlines()) == 1


def test_seeds_as_a_comma_list_are_integers():
    """``--set seeds=0,1`` is a list of texts: it said "must hold integers, got '0'"."""
    from losscli.config import build_config, validate

    assert validate(build_config("default", {"seeds": "0,1"})).seed_list() == [0, 1]
    with pytest.raises(UsageError, match="seed 1 twice"):
        validate(build_config("default", {"seeds": "1, 1"})).seed_list()
    with pytest.raises(UsageError, match="must hold integers, got '²'"):
        validate(build_config("default", {"seeds": "0,²"})).seed_list()


@pytest.mark.parametrize("spec, extra", [("focal(gamma=2)(x=1)", "(x=1)"), ("focal(gamma=2) (alpha=[1,2])", "(alpha=[1,2])"),
                                         ("focal(alpha=[1,2])(gamma=2)", "(gamma=2)")])
def test_a_second_parameter_list_is_named_not_called_unbalanced(spec, extra):
    """The bracket check read both lists as one and answered "unbalanced brackets in 'gamma=2)(x=1'"."""
    from losscli.losses import resolve_loss

    with pytest.raises(UsageError) as err:
        resolve_loss(spec)
    assert str(err.value) == (f"loss spec {spec!r}: {extra!r} follows its parameter list; give all parameters in "
                              "one list, as focal(a=1, b=2)")


@pytest.mark.parametrize("spec, position, hint", [
    ("focal(gamma=2,)", 2, ", a trailing comma"),
    ("focal(,gamma=2)", 1, ", a leading comma"),
    ("focal(gamma=2,,alpha=[1,2])", 2, ""),
    ("focal(gamma=2, ,alpha=0.5)", 2, ""),
    ("focal(,)", 1, ", a leading comma"),
    ("(ce + focal)(weight=[1,2],)", 2, ", a trailing comma"),
])
def test_an_empty_item_in_a_spec_parameter_list_is_refused(spec, position, hint):
    """``focal(gamma=2,)`` was read as ``focal(gamma=2)``: an empty item dropped silently, unlike the
    comma list options."""
    from losscli.losses import resolve_loss

    with pytest.raises(UsageError) as err:
        resolve_loss(spec)
    assert str(err.value) == (f"loss spec {spec!r}: its parameter list has an empty item (item {position}{hint}); "
                              "remove the extra comma or write the missing parameter")


@pytest.mark.parametrize("spec, label", [("focal()", "focal"), ("focal( )", "focal"), ("(ce + focal)()", "ce + focal")])
def test_blank_parentheses_are_the_defaults(spec, label):
    """No item at all is no parameters, as a call without arguments: the defaults, as before."""
    from losscli.losses import resolve_loss

    assert resolve_loss(spec).label == label


@pytest.mark.parametrize("args", [
    ["train", "--loss", "focal(gamma=2,)"],
    ["compare", "--losses", "ce,focal(,gamma=2)"],
    ["compare", "--losses", "ce + focal(gamma=2,,alpha=[1,2])"],
    [*PROFILE, "--losses", "focal(gamma=2,)"],
    ["check-loss", "focal(gamma=2,)"],
])
def test_an_empty_spec_parameter_is_one_line_everywhere(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(args, capsys, needle="its parameter list has an empty item")
    assert not any(tmp_path.iterdir())
