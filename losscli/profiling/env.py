"""Environment facts for profile reports: versions, device, threads, peak bandwidth."""

from __future__ import annotations

import os
import platform

import torch

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
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def peak_bandwidth_gbs(device: torch.device) -> float | None:
    """The device's peak DRAM bandwidth in GB/s (10^9 bytes/s), or None on CPU / unknown.

    From the driver's memory clock (kHz) and bus width (bits), double data rate:
    ``2 * clock * bus_width / 8``; else from a table of published figures.
    """
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    name = props.name
    for key, gbs in _PEAK_GBS_BY_NAME:
        if key in name:
            return gbs
    return None


def environment(device: torch.device) -> dict:
    from losscli import __version__

    env = {
        "losscli": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type if device.index is None else str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["peak_bandwidth_gbs"] = peak_bandwidth_gbs(device)
    return env
