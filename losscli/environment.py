"""The environment every report records: versions, device, threads, precision, compile.

One builder for every report (run, compare, profile, calibration), so the same facts have the
same keys everywhere. torch is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import os
import platform
from typing import Any

# Published peak DRAM bandwidth (GB/s), used only when the driver does not report the
# memory clock and bus width. Matched by substring of the device name, most specific first.
_PEAK_GBS_BY_NAME = (
    ("H200", 4800.0),
    ("H100 PCIe", 2000.0),
    ("H100 NVL", 3900.0),
    ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100-PCIE-80GB", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("A10", 600.0),
    ("V100", 900.0),
    ("T4", 320.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: Any) -> str:
    """The GPU's name for CUDA devices, the CPU model otherwise."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_model()


def peak_bandwidth_gbs(device: Any) -> float | None:
    """The device's peak DRAM bandwidth in GB/s (10^9 bytes/s), or None on CPU / unknown.

    From the driver's memory clock (kHz) and bus width (bits), double data rate:
    ``2 * clock * bus_width / 8``; else from a table of published figures.
    """
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    for key, gbs in _PEAK_GBS_BY_NAME:
        if key in props.name:
            return gbs
    return None


def environment(device: Any = None, *, compiled: bool | None = None, amp_dtype: Any = None,
                threads: int | None = None) -> dict[str, Any]:
    """Versions, device (name, threads, CPU count), and when given the precision and compile flag.

    ``device`` is a ``torch.device`` (default CPU); ``amp_dtype`` the autocast dtype or None
    (float32); ``threads`` the intra-op threads the work used (default: torch's current setting).
    """
    import torch

    from losscli import __version__

    device = torch.device("cpu") if device is None else torch.device(device)
    env: dict[str, Any] = {
        "losscli": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads() if threads is None else int(threads),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "dtype": "float32" if amp_dtype is None else f"{str(amp_dtype).replace('torch.', '')}-autocast",
    }
    if compiled is not None:
        env["compiled"] = bool(compiled)
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["peak_bandwidth_gbs"] = peak_bandwidth_gbs(device)
    return env
