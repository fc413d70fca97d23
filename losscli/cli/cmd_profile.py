"""``losscli profile``: what a loss costs (time, memory, scaling) and its analytic shape."""

from __future__ import annotations

from typing import Optional

import typer

from losscli.cli import names
from losscli.cli.app import app
from losscli.cli.common import FORMAT_OPTION, QUIET_OPTION, parse_csv
from losscli.cli.output import Format, emit, log
from losscli.serialize import render_table

_COST_COLUMNS = ["loss", "n", "c", "dtype", "forward_ms", "backward_ms", "total_ms", "total_ms_p20", "total_ms_p80",
                 "peak_mb", "peak_delta_mb", "overhead_vs_ce", "overhead_p20", "overhead_p80", "memory_vs_ce"]
_GPU_COLUMNS = ["bandwidth_gbs", "bandwidth_frac"]
# torch_*: torch's own chunked F.linear_cross_entropy (ce only, torch >= 2.13), the field's peer
_LINEAR_COLUMNS = ["loss", "n", "c", "d", "dtype", "chunk_size", "materialised_ms", "chunked_ms", "streamed_ms",
                   "torch_ms", "time_ratio", "stream_time_ratio", "torch_time_ratio", "materialised_extra_mb",
                   "chunked_extra_mb", "streamed_extra_mb", "torch_extra_mb", "extra_ratio", "stream_extra_ratio",
                   "torch_extra_ratio", "grad_max_rel_err", "stream_grad_max_rel_err"]
_SHAPE_COLUMNS = ["loss", "bounded", "bounded_registry", "max_value", "symmetric", "symmetric_registry", "sum_spread",
                  "calibrated", "proper", "minimiser_rel_error", "flag"]


def _check_output_paths(plot: Optional[str], trace: Optional[str]) -> None:
    """Refuse a --plot file or --trace directory that cannot be written, before minutes of measuring."""
    import errno
    import os

    from losscli.atomic import check_writable_dir
    from losscli.cli.common import check_not_empty
    from losscli.errors import UsageError

    check_not_empty(plot, "--plot", "give a file name such as profile.png, or leave --plot out")  # '' drew nothing
    check_not_empty(trace, "--trace", "give a directory, or leave --trace out")  # '' traced nothing
    if plot is not None:
        try:
            os.stat(plot)
        except OSError as exc:  # os.path.isdir() says False to a name too long, which failed only once measured
            if exc.errno == errno.ENAMETOOLONG:
                raise UsageError(f"--plot {plot}: the file name is too long for the file system; give a shorter one") from None
        if os.path.isdir(plot):
            raise UsageError(f"--plot {plot}: is a directory; give a file name such as {os.path.join(plot, 'profile.png')}")
        ext = os.path.splitext(plot)[1].lower().lstrip(".")
        if ext and ext not in _PLOT_FORMATS:  # no extension: matplotlib writes a PNG, as before
            raise UsageError(f"--plot {plot}: cannot write a .{ext} image; end the name with "
                             f".{', .'.join(_PLOT_FORMATS)}")
        parent = os.path.dirname(os.path.abspath(plot))
        if not os.path.isdir(parent):
            raise UsageError(f"--plot {plot}: directory {parent} does not exist")
        check_writable_dir(parent, "--plot")
    if trace is not None:
        parent = os.path.dirname(os.path.abspath(trace))
        if not os.path.isdir(parent) and not os.path.exists(parent):  # one new level is made, not a whole path
            raise UsageError(f"--trace {trace}: directory {parent} does not exist")
        check_writable_dir(trace, "--trace")


#: image formats every matplotlib backend writes (Agg)
_PLOT_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "webp", "tif", "tiff", "eps", "ps")


def _ints(text: str, what: str) -> list[int]:
    """``"1000,32k,128_000"`` -> ``[1000, 32000, 128000]``."""
    from losscli.errors import UsageError

    out = []
    for item in parse_csv(text, what):
        raw = item.lower().replace("_", "")
        mult = 1000 if raw.endswith("k") else 1
        try:
            value = float(raw[:-1] if mult > 1 else raw) * mult
            if not value.is_integer():
                raise ValueError
        except ValueError:
            raise UsageError(f"{what} must be a comma list of integers (e.g. 1000,32000 or 32k), got {item!r}") from None
        out.append(int(value))
    if not out:
        raise UsageError(f"{what} needs at least one value")
    return out


def _once(values: list, what: str, text: str | None, name=str) -> list:
    """``values`` when each is listed once: ``--classes 4,4`` (or ``1000,1k``) measured and reported
    the same configuration twice, as ``--losses ce,ce`` is refused for."""
    from losscli.errors import UsageError

    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:
        raise UsageError(f"{what} {text!r} lists {name(twice)} twice; list each once")
    return values


@app.command("profile")
def profile_command(
    losses: Optional[str] = typer.Option(None, "--losses", "-l", autocompletion=names.complete_losses, help="Comma list of losses or specs (focal(gamma=3)); default: all registered."),
    # None defaults (the effective one is in the help): an option the chosen mode does not read is refused when given
    batch: Optional[str] = typer.Option(None, "--batch", "-n", help="Batch size(s) N, comma list for a sweep.  [default: 4096]"),
    classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Number(s) of classes C, comma list for a sweep (32k allowed).  [default: 1000]"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Logit dtype(s): float32, bfloat16, float16, float64 (comma list).  [default: float32]"),
    device: Optional[str] = typer.Option(None, "--device", help="auto (CUDA if present), cpu, cuda or cuda:N.  [default: auto]"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile each loss (compile time reported separately; not with --linear-dim).  [default: no-compile]"),
    repeats: Optional[int] = typer.Option(None, "--repeats", "-r", help="Timed repeats per configuration (median, p20, p80).  [default: 20]"),
    warmup: Optional[int] = typer.Option(None, "--warmup", "-w", help="Untimed warm-up passes per configuration.  [default: 3]"),
    trace: Optional[str] = typer.Option(None, "--trace", help="Write a torch.profiler chrome trace per loss to DIR; print top kernels (not with --linear-dim)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a PNG: time and memory vs C (or the loss shapes with --shape; not with --linear-dim)."),
    linear_dim: Optional[int] = typer.Option(None, "--linear-dim", help="Compare materialised vs chunked linear layer (hidden dim D) + loss."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Rows per chunk for --linear-dim (default: ~32 MB of logits)."),
    shape: bool = typer.Option(False, "--shape", help="Analytic shape: loss/gradient vs p_y and margin, property checks vs the registry (reads --losses, --shape-classes, --seed, --plot, --threads)."),
    shape_classes: Optional[int] = typer.Option(None, "--shape-classes", help="Number of classes for --shape (small keeps it fast).  [default: 4]"),
    memory: Optional[bool] = typer.Option(None, "--memory/--no-memory", help="Measure peak memory (separate untimed pass).  [default: memory]"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random inputs.  [default: 0]"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (torch.set_num_threads); default 1 when timing, as benchmarks/bench_losses.py (torch's own with --shape); recorded per row."),
    fmt: Format = FORMAT_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Forward/backward time and peak memory per loss vs cross-entropy, scaling over N and C, dtype, compile;
    materialised vs chunked vs vocabulary-streamed linear+loss; analytic loss shapes.

    Each loss is timed paired with ce (warmed, interleaved passes, one thread unless --threads):
    overhead_vs_ce is the median per-pass ratio with its p20/p80, and a warning says when they
    are too far apart to trust. CPU memory is measured from torch.profiler allocation events
    (exact allocator bytes); CUDA memory from max_memory_allocated.

    --shape and --linear-dim are modes of their own: an option the mode does not read is refused, not ignored.
    """
    from losscli.errors import RunFailedError, UsageError

    say = (lambda msg: None) if quiet else log
    loss_list = parse_csv(losses, "--losses") if losses is not None else None
    if loss_list is not None and not loss_list:
        raise UsageError("--losses is empty: give a comma list of losses (e.g. ce,focal), or leave it out for all")
    from losscli.profiling import check_options

    opts = check_options(repeats=repeats, warmup=warmup, linear_dim=linear_dim, chunk_size=chunk_size, shape=shape,
                         shape_classes=shape_classes, batch=batch, classes=classes, dtype=dtype, device=device,
                         compile=compile, trace=trace, plot=plot, memory=memory, seed=seed, threads=threads)
    batch, classes, dtype, device, compile, repeats, warmup, memory, seed, shape_classes = (
        opts[k] for k in ("batch", "classes", "dtype", "device", "compile", "repeats", "warmup", "memory", "seed",
                          "shape_classes"))
    _check_output_paths(plot, trace)

    if shape:
        from losscli.profiling.shape import analyse_losses, plot_shapes

        if threads is not None:  # else torch's own setting, as before
            import torch

            torch.set_num_threads(threads)

        report = analyse_losses(loss_list, c=shape_classes, seed=seed, with_curves=plot is not None, progress=say)
        if plot:
            report["plots"] = plot_shapes(report, plot)
            for path in report["plots"]:
                say(f"wrote {path}")
        for r in report["rows"]:
            r.pop("curves", None)
        rows = [{**r, "flag": ("DISAGREES: " + ",".join(r["disagreements"])) if r["disagreements"] else ""}
                for r in report["rows"]]
        _emit(report, fmt, [("loss shapes (C=%d)" % shape_classes, rows, _SHAPE_COLUMNS)], say)
        if not rows:  # every loss skipped: "(no rows)" and exit 0 before
            raise RunFailedError("no loss could be analysed (see skipped)")
        return

    import torch  # heavy: only once the command runs

    # one thread unless asked: the same setting as benchmarks/bench_losses.py, so the numbers compare
    torch.set_num_threads(threads or 1)

    from losscli.device import resolve_device
    from losscli.profiling.harness import SCHEMA, dtype_name, parse_dtype, profile_losses

    batches = _once(_ints(batch, "--batch"), "--batch", batch)
    class_list = _once(_ints(classes, "--classes"), "--classes", classes)
    dtypes = _once([parse_dtype(d) for d in parse_csv(dtype, "--dtype")], "--dtype", dtype, dtype_name)
    dev = resolve_device(device)

    if linear_dim is not None:
        from losscli.profiling.cases import resolve_loss_names
        from losscli.environment import environment
        from losscli.profiling.linear_bench import compare_linear_losses

        specs = [r[0] for r in resolve_loss_names(loss_list)]
        lrows, skipped = compare_linear_losses(specs, batches=batches, classes=class_list, dims=[linear_dim], dtypes=dtypes,
                                               device=dev, repeats=repeats, warmup=warmup, chunk_size=chunk_size,
                                               memory=memory, seed=seed, progress=say)
        report = {"schema": SCHEMA,
                  "config": {"losses": specs, "batch": batches, "classes": class_list, "dtype": [dtype_name(d) for d in dtypes],
                             "device": dev.type, "linear_dim": linear_dim, "chunk_size": chunk_size,
                             "repeats": repeats, "warmup": warmup, "seed": seed},
                  "env": environment(dev), "rows": [], "linear": lrows, "skipped": skipped}
        if not lrows:
            _emit(report, fmt, [], say)
            raise RunFailedError("no loss could be compared (see skipped)")
        _emit(report, fmt, [("linear layer + loss: materialised vs row-chunked vs vocabulary-streamed", lrows,
                             _LINEAR_COLUMNS)], say)
        _refuse_unmeasured(specs, lrows)
        return

    report = profile_losses(loss_list, batches=batches, classes=class_list, dtypes=dtypes, device=dev, compile=compile,
                            repeats=repeats, warmup=warmup, memory=memory, trace_dir=trace, seed=seed, progress=say)
    if plot:
        from losscli.profiling.plot import plot_scaling

        report["plot"] = plot_scaling(report, plot)
        say(f"wrote {plot}")
    cols = list(_COST_COLUMNS)
    if compile:
        cols.insert(4, "compile_s")
    if dev.type == "cuda":
        cols += _GPU_COLUMNS
    if not report["rows"]:
        _emit(report, fmt, [], say)
        raise RunFailedError("every configuration failed (see skipped)")
    env = report["env"]
    title = f"loss cost on {env['device_name']} ({env['threads']} threads, torch {env['torch']})"
    _emit(report, fmt, [(title, report["rows"], cols)], say)
    for warning in report.get("warnings") or []:
        log(warning)  # even with --quiet: a ratio that cannot be trusted must not pass silently
    _refuse_unmeasured(report["config"]["losses"], report["rows"])


def _refuse_unmeasured(requested: list[str], rows: list[dict]) -> None:
    """Exit 1 when a loss the user asked for has no row at any shape: the table (already printed) holds
    the others, but a script reading exit 0 took the skipped loss for measured."""
    from losscli.errors import RunFailedError

    measured = {r["loss"] for r in rows}
    missing = [spec for spec in requested if spec not in measured]
    if missing:
        raise RunFailedError(f"{', '.join(missing)} could not be measured at any of the shapes asked for "
                             "(see skipped); the rows above are for the others")


def _emit(report: dict, fmt: Format, tables: list[tuple[str, list[dict], list[str]]], say) -> None:
    if fmt in (Format.yaml, Format.json):
        emit(report, fmt)
        return
    if fmt == Format.csv:  # one table of rows (each invocation has one), the same columns as the text table
        rows = [r for _, table_rows, _ in tables for r in table_rows]
        emit(report, fmt, rows=rows, headers=tables[0][2] if tables else None)
        for s in report.get("skipped") or []:
            say(f"skipped {s['loss']}: {s['reason']}")
        return
    parts = []
    for title, rows, cols in tables:
        heading = f"## {title}" if fmt == Format.md else title
        parts.append(heading + "\n\n" + render_table(rows, fmt, headers=cols) if rows else heading + "\n\n(no rows)")
    skipped = report.get("skipped") or []
    if skipped:
        seen = {}
        for s in skipped:
            seen.setdefault(s["loss"], s["reason"])
        lines = [f"- {k}: {v}" for k, v in seen.items()]
        if fmt == Format.md:
            parts.append("## skipped\n\n" + "\n".join(lines))
        else:
            for line in lines:
                say(f"skipped {line[2:]}")
    emit(report, fmt, text="\n\n".join(parts))
