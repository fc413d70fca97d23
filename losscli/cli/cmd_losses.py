"""``losscli losses``: list the loss registry or show one loss in full."""

from __future__ import annotations

from typing import Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION
from losscli.cli.output import Format, emit, log


@app.command("losses")
def losses_command(
    name: Optional[str] = typer.Argument(None, autocompletion=names.complete_loss, help="Show this loss in full (formula, hyperparameters, properties, paper); a weighted sum such as 'ce + 0.5*focal' shows its derived properties; a calibrator (h_calibration) says how to use it."),
    family: Optional[str] = typer.Option(None, "--family", help="Only losses of this family (e.g. noise-robust, imbalance)."),
    fmt: Format = FORMAT_OPTION,
) -> None:
    """List the registered losses: family, hyperparameters with defaults, properties, paper. Losses of
    installed plugins (entry points in the group losscli.losses) are listed too; a plugin given by
    import path (my_package.losses:MyLoss) is shown in full by name."""
    from dataclasses import asdict

    from losscli.errors import UsageError
    from losscli.losses import LOSSES, resolve_loss
    from losscli.losses.resolve import parse_spec
    from losscli.losses.base import FAMILIES
    from losscli.losses.plugin import PLUGIN_FAMILY
    from losscli.lossspec import split_composite

    if name is not None:  # '' (an unset shell variable) listed every loss, as `profile --losses ''` profiled them
        if split_composite(name) is not None:
            spec = resolve_loss(name)
            data = spec.info().to_dict()
            data["parts"] = [{"weight": w, "label": p.label, "family": p.info().family,
                              "paper": _paper(asdict(p.info().reference))} for w, p in spec.parts]
        elif name.strip() not in LOSSES and (calibrator := _calibrator(name)) is not None:
            # issue 13's post-hoc calibrators are looked up here too; they said "unknown loss"
            head = f"{'## ' if fmt == Format.md else ''}{calibrator['name']} ({calibrator['kind']})"
            emit(calibrator, fmt, text="\n".join([head, ""] + [f"{k}: {v}" for k, v in list(calibrator.items())[2:]]))
            return
        else:  # a spec with parameters ('focal(gamma=3)') is shown with them: it said "unknown loss"
            bare, given = parse_spec(name)
            if given:
                spec = resolve_loss(name)  # one line for an unknown loss or a bad parameter
                data = spec.info().to_dict()
                data["params"] = {**data["params"], **spec.params}
            else:  # a plugin's required parameters are shown as such, not refused as missing
                data = LOSSES.get(bare).info.to_dict()
            data["linear_loss"] = _linear_support(data["name"])
        if fmt in (Format.table, Format.md):
            emit(data, fmt, text=_describe(data, md=fmt == Format.md))
        else:
            emit(data, fmt, rows=[_row(data)])
        return
    families = (*FAMILIES, PLUGIN_FAMILY)  # plugin: installed plain-module plugins (no declared family)
    if family is not None and family not in families:
        import difflib

        close = difflib.get_close_matches(family, families, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown family {family!r}.{hint} Families: {', '.join(families)}.")
    for problem in LOSSES.load_plugins():  # installed plugins are listed too; a broken one is a warning
        log(f"warning: {' '.join(problem.split())}")
    infos = [LOSSES.get(n).info.to_dict() for n in LOSSES.names(family=family)]
    emit(infos, fmt, rows=[_row(d) for d in infos])


def _calibrator(name: str) -> dict | None:
    """A built-in (or installed) post-hoc calibrator named ``name`` as a description; None if there is none."""
    from losscli.calibrate import CALIBRATORS
    from losscli.errors import UsageError
    from losscli.lossspec import is_plugin_name

    if is_plugin_name(name.strip()):
        return None
    try:
        entry = CALIBRATORS.entry(name)
    except UsageError:
        return None
    defaults = getattr(entry.obj, "defaults", None) or {}
    return {"name": entry.name, "kind": "post-hoc calibrator, not a training loss", "method": entry.meta.get("doc", "-"),
            "accuracy_preserving": entry.meta.get("accuracy_preserving"),
            "hparams": ", ".join(f"{k}={v}" for k, v in defaults.items()) or "-",
            "usage": f"losscli calibrate RUN_DIR --methods {entry.name}"}


def _linear_support(name: str) -> dict:
    """How ``losscli.losses.linear_loss`` handles this loss: streamed over the vocabulary or not, and why."""
    from losscli.losses.stream_terms import streaming_support, unsupported_reason
    from losscli.losses import LOSSES

    ok, how = streaming_support(name)
    return {"supported": unsupported_reason(LOSSES.get(name).info) is None, "streams": ok, "how": how}


def _row(d: dict) -> dict:
    """A loss as one table row (the list, and --format csv of one loss)."""
    return {
        "name": d["name"],
        "family": d["family"],
        "params": ", ".join(f"{k}={v}" for k, v in d["params"].items()) or "-",
        "input/target": f"{d['properties']['input']}/{d['properties']['target']}",
        "properties": ", ".join(_flags(d["properties"])) or "-",
        "paper": _paper(d["reference"]),
    }


def _paper(ref: dict) -> str:
    """``Authors year``, or ``-`` for a plugin that declares no paper (its year is 0)."""
    return f"{ref['authors']} {ref['year']}" if ref.get("year") else "-"


def _flags(props: dict) -> list[str]:
    out = [k for k in ("bounded", "symmetric", "multilabel", "soft_targets", "batch_coupled", "can_be_negative") if props.get(k)]
    if props.get("needs_class_counts"):
        out.append("class_counts")
    if props.get("head"):
        out.append(f"{props['head']}_head")
    out += [f"needs:{n}" for n in props.get("needs", [])]
    if not props.get("stackable", True):
        out.append("not_stackable")
    return out


def _describe(d: dict, md: bool) -> str:
    ref = d["reference"]
    h = "## " if md else ""
    lines = [f"{h}{d['name']} ({d['family']})", "", f"formula: {d['formula']}", ""]
    if d["aliases"]:
        lines.append(f"aliases: {', '.join(d['aliases'])}")
    lines.append("hyperparameters:" if d["params"] else "hyperparameters: none")
    for k, v in d["params"].items():
        lines.append(f"  - {k} = {v!r}  (valid: {d['param_ranges'][k]}) {d['param_docs'].get(k, '')}".rstrip())
    lines.append(f"input: {d['properties']['input']}, target: {d['properties']['target']}")
    lines.append("properties: " + (", ".join(f"{k}={v}" for k, v in d["properties"].items())))
    if d.get("parts"):  # a composite: its parts and their papers
        lines.append("parts:")
        lines += [f"  - {p['weight']:g} * {p['label']} ({p['family']}; {p['paper']})" for p in d["parts"]]
    elif ref["year"]:
        lines.append(f"paper: {ref['authors']} ({ref['year']}). {ref['title']}. {ref.get('venue', '')}".rstrip(". ") + ".")
    else:  # a plugin without metadata: no paper, its docstring
        lines.append(f"paper: none declared ({ref['title']})")
    if d.get("linear_loss"):
        lines.append(f"linear_loss: {d['linear_loss']['how']}")
    if d.get("notes"):
        lines += ["", f"notes: {d['notes']}"]
    return "\n".join(lines)
