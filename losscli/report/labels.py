"""Names for people: settings, losses and their order in a report (pure functions)."""

from __future__ import annotations

import json
from typing import Any

from losscli.lossspec import format_loss_spec


def loss_label(loss: Any) -> str:
    """A run's loss label: ``loss['label']``, else its canonical spec text, else ``str(loss)``."""
    if isinstance(loss, dict):
        if loss.get("label"):
            return str(loss["label"])
        return format_loss_spec(str(loss.get("name", "?")), {**(loss.get("params") or {}), **(loss.get("options") or {})})
    return str(loss)


def setting_key(setting: dict[str, Any] | None) -> str:
    return json.dumps(setting or {}, sort_keys=True, default=str)


def is_none(value: Any) -> bool:
    return value is None or str(value).strip().lower() in ("none", "", "clean", "null")


def name_of(value: Any) -> str:
    if isinstance(value, dict):
        name = value.get("name") or value.get("label") or ""
        rest = {k: v for k, v in value.items() if k not in ("name", "label")}
        return f"{name} (" + ", ".join(f"{k}={short(v)}" for k, v in rest.items()) + ")" if rest else str(name)
    if isinstance(value, (list, tuple)):
        return ", ".join(name_of(v) for v in value)
    return str(value)


def short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(short(v) for v in value) + "]"
    return str(value)


def setting_label(setting: dict[str, Any], with_dataset: bool = False) -> str:
    """A short title: ``noise sym:0.4, imbalance none``."""
    parts = []
    if with_dataset and setting.get("dataset") is not None:
        parts.append(f"dataset {name_of(setting['dataset'])}")
    parts.append(f"noise {'none' if is_none(setting.get('noise')) else setting['noise']}")
    parts.append(f"imbalance {'none' if is_none(setting.get('imbalance')) else setting['imbalance']}")
    parts += [f"{k} {v}" for k, v in setting.items() if k not in ("dataset", "noise", "imbalance")]
    return ", ".join(parts)


def setting_phrase(setting: dict[str, Any], with_dataset: bool = False) -> str:
    """Words for a sentence: ``on clean data`` / ``under sym:0.4 noise`` / ``under exp:100 imbalance``."""
    noise, imb = setting.get("noise"), setting.get("imbalance")
    if is_none(noise) and is_none(imb):
        out = "on clean data"
    elif is_none(imb):
        out = f"under {noise} noise"
    elif is_none(noise):
        out = f"under {imb} imbalance"
    else:
        out = f"under {noise} noise with {imb} imbalance"
    extra = [f"{k} {v}" for k, v in setting.items() if k not in ("dataset", "noise", "imbalance")]
    if extra:
        out += " (" + ", ".join(extra) + ")"
    if with_dataset and setting.get("dataset") is not None:
        out += f" on {name_of(setting['dataset'])}"
    return out


def config_order(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return [loss_label(v) if isinstance(v, dict) else str(v) for v in value]


def seed_sort(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


def plural(n: int, word: str) -> str:
    """``1 seed``, ``6 seeds``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
