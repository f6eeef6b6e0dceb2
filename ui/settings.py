"""The Playground's settings and the URL: one loop writes them as query parameters, one loop reads them back.

Settings are a plain dict of the Playground's config values (`config.LABELS`, in order) plus the preset's name.
The URL carries the preset and whatever differs from it, under the CLI's names (`config.cli_name`). No
Streamlit here, so these functions are tested without it.
"""

from __future__ import annotations

from typing import Any

from lora_core.settings.config import (
    FIELDS,
    LABELS,
    PRESETS,
    ConfigError,
    ExperimentConfig,
    cli_name,
    coerce,
    field_name,
    preset,
)

PRESET_LABELS = {"default": "Default", "digits": "Digits", "article": "Article",
                 "dynamics": "Dynamics (directions one at a time)", "text": "Text (a small transformer)"}


def preset_settings(name: str) -> dict[str, Any]:
    """The named preset's Playground settings."""
    cfg = preset(name)
    return {"preset": name, **{k: getattr(cfg, k) for k in LABELS}}


def settings_of(config: ExperimentConfig) -> dict[str, Any]:
    """A config's Playground settings, on the preset of its task (so that its link names only what differs)."""
    name = config.task if config.task in PRESETS else "default"  # a task's own preset is named after it
    return {**preset_settings(name), **{k: getattr(config, k) for k in LABELS}}


def to_config(settings: dict[str, Any], **changes: Any) -> ExperimentConfig:
    """The config of `settings` with `changes`; raises ConfigError when they cannot run."""
    return preset(settings["preset"], **{**{k: settings[k] for k in LABELS}, **changes})


def url_params(settings: dict[str, Any]) -> dict[str, str]:
    """The settings as query parameters: the preset, then every value that differs from it (CLI names)."""
    base = preset_settings(settings["preset"])
    out = {"preset": settings["preset"]} if settings["preset"] != "default" else {}
    out.update({cli_name(k): _text(v) for k, v in settings.items() if k in LABELS and v != base[k]})
    return out


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_params(params: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Settings from query parameters, and one warning per parameter that was ignored and why."""
    warnings, values, raw_of = [], {}, {}
    name = params.get("preset", "default")
    if name not in PRESETS:
        warnings.append(f"preset={name}: unknown preset; allowed: {', '.join(PRESETS)}")
        name = "default"
    for key, raw in params.items():
        field = field_name(key)
        if field == "preset":
            continue
        if field not in LABELS:
            warnings.append(f"{key}={raw}: not a Playground setting; allowed: "
                            + ", ".join(cli_name(k) for k in LABELS) + ", preset")
            continue
        shown = FIELDS[field].metadata["choice_labels"] or {}
        raw_of[field] = raw
        raw = {label: k for k, label in shown.items()}.get(raw, raw)  # 'low-rank' as shown means 'low_rank'
        try:
            values[field] = coerce(field, raw)
        except ConfigError as e:
            warnings.append(f"{key}={raw_of[field]}: {e}")
    base = preset(name)
    accepted = _accept(base, values)
    for field in values.keys() - accepted.keys():
        try:
            base.replace(**{**accepted, field: values[field]})
        except ConfigError as e:
            warnings.append(f"{cli_name(field)}={raw_of[field]}: {e}")
    return {**preset_settings(name), **accepted}, warnings


def _accept(base: ExperimentConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The largest set of values that validates together, found greedily (sizes can make a rank valid)."""
    try:
        base.replace(**values)
        return dict(values)
    except ConfigError:
        pass
    accepted, pending, changed = {}, dict(values), True
    while changed:
        changed = False
        for field, value in list(pending.items()):
            try:
                base.replace(**{**accepted, field: value})
            except ConfigError:
                continue
            accepted[field] = pending.pop(field)
            changed = True
    return accepted
