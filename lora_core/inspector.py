"""Reading any PEFT LoRA adapter without its base model: per module, its rank, scaling, size and the spectrum of
ΔW = s·B·A, from the factors (QR of each and an r x r SVD; the dense d x k matrix is never formed).

    report = inspect_adapter(Path("adapter_model.safetensors").read_bytes(), config_text)

Only safetensors is read (a pickle could run code); `AdapterError` says in one line what is wrong with a file.
Keys as PEFT writes them: `base_model.model.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r], optional
`.lora_magnitude_vector` [out] (DoRA), and `.lora_embedding_A` [r, vocabulary], `.lora_embedding_B` [dim, r].
Rank and α come from adapter_config.json (`r`, `lora_alpha`, `rank_pattern`, `alpha_pattern`, `use_rslora`),
else from the shapes with α = r assumed, and the report says so.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load

from .measure.analysis import factored_singular_values
from .settings.variants import lora_scaling

# The largest adapter read: 1 GiB, or $LORA_EXPLORER_ADAPTER_MAX_MIB (whoever starts the server sets it); per call too.
MAX_BYTES = int(float(os.environ.get("LORA_EXPLORER_ADAPTER_MAX_MIB", 1024)) * 2**20)
ENERGY_SHARES = (0.9, 0.99)  # "what rank would keep 90 / 99 % of the energy"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|"
                  r"lora_magnitude_vector)(?:\.[^.]+)?(?:\.weight)?$")


class AdapterError(ValueError):
    """A file that is not a LoRA adapter we can read; the message says why in one line."""


@dataclass
class ModuleReport:
    module: str
    shape: tuple[int, int]  # ΔW: [out, in]
    rank: int
    alpha: float
    scaling: float
    params: int  # trainable numbers of this module's adapter (DoRA's magnitudes included)
    delta_norm: float  # ‖ΔW‖_F
    singular_values: list[float]  # of ΔW, descending, `rank` of them
    effective_rank: float  # exp of the entropy of the normalised σ²
    rank_for: dict[str, int]  # '90%' -> the fewest directions holding 90 % of ‖ΔW‖²
    share: float = 0.0  # this module's share of Σ‖ΔW‖² over the adapter
    dora: bool = False


@dataclass
class AdapterReport:
    modules: list[ModuleReport]
    assumed: list[str] = field(default_factory=list)  # what was not in the config and was assumed
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_rank(values: list[float]) -> float:
    """exp(H) of p_i = σ_i² / Σσ²: 1 for a single direction, r for r equal ones."""
    energy = [v * v for v in values]
    total = sum(energy)
    if total <= 0:
        return 0.0
    return math.exp(-sum(e / total * math.log(e / total) for e in energy if e > 0))


def rank_for_energy(values: list[float], share: float) -> int:
    """The fewest leading directions whose σ² add up to at least `share` of the total."""
    energy = [v * v for v in values]
    total, running = sum(energy), 0.0
    for k, e in enumerate(energy, 1):
        running += e
        if running >= share * total * (1 - 1e-12):
            return k
    return len(values)


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern/alpha_pattern lookup (peft.utils.other.get_pattern_key)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def parse_config(text: str | bytes | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"adapter_config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError("adapter_config.json is not a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"adapter_config.json is a {config.get('peft_type')} adapter, not LoRA")
    return config


def _looks_like_pickle(data: bytes) -> bool:
    """torch.save's zip (PK..) or a bare pickle (0x80 and a protocol byte); a safetensors file has its JSON
    header's '{' at byte 8, whatever its first bytes (the header's length) are."""
    return data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[8:9] != b"{")


def inspect_adapter(data: bytes, config_text: str | bytes | None = None, max_bytes: int = MAX_BYTES) -> AdapterReport:
    """The report of a PEFT LoRA adapter from the bytes of its adapter_model.safetensors (and of its config)."""
    if len(data) > max_bytes:
        raise AdapterError(f"the adapter is {len(data) / 2**20:,.0f} MiB, more than the {max_bytes / 2**20:,.0f} MiB "
                           "read here")
    if _looks_like_pickle(data):
        raise AdapterError("this is a pickle (.bin/.pt), which could run code when read: only .safetensors is read")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        raise AdapterError(f"not a readable safetensors file ({str(e).splitlines()[0][:120]})") from None
    config = parse_config(config_text)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match:
            parts.setdefault(match["module"], {})[match["part"]] = tensor
    if not parts:
        raise AdapterError("no LoRA weights in this file (no keys ending in lora_A / lora_B)")
    report = AdapterReport([], config=config)
    if "r" not in config:
        report.assumed.append("r: no config, so each module's rank was read from its shapes")
    if "lora_alpha" not in config:
        report.assumed.append("lora_alpha: no config, so α = r was assumed (scaling 1, or √r with rsLoRA)")
    for module in sorted(parts):
        report.modules.append(_module(module, parts[module], config))
    if any(m.dora for m in report.modules):
        report.assumed.append("DoRA modules: ΔW here is s·B·A; merging also rescales each row of W by "
                              "m / ‖W + s·B·A‖, which needs the base weights")
    total = sum(m.delta_norm ** 2 for m in report.modules)
    for m in report.modules:
        m.share = m.delta_norm ** 2 / total if total > 0 else 0.0
    return report


def _module(module: str, part: dict[str, torch.Tensor], config: dict[str, Any]) -> ModuleReport:
    embedding = "lora_embedding_A" in part
    a, b = (part.get("lora_embedding_A"), part.get("lora_embedding_B")) if embedding else \
        (part.get("lora_A"), part.get("lora_B"))
    if a is None or b is None:
        raise AdapterError(f"{module}: has only one of its two factors A and B")
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise AdapterError(f"{module}: A {tuple(a.shape)} and B {tuple(b.shape)} do not multiply (A: [r, in], "
                           "B: [out, r])")
    r = a.shape[0]
    rank = int(_pattern(config.get("rank_pattern") or {}, module, config.get("r", r)))
    if rank != r:
        raise AdapterError(f"{module}: the config says r = {rank} but the factors have rank {r}")
    alpha = float(_pattern(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", r)))
    scaling = lora_scaling(alpha, r, bool(config.get("use_rslora", False)))
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    if not (torch.isfinite(a64).all() and torch.isfinite(b64).all()):
        raise AdapterError(f"{module}: holds NaN or infinite values")
    values = factored_singular_values(b64, a64, scaling).tolist()
    magnitude = part.get("lora_magnitude_vector")
    if magnitude is not None and magnitude.numel() != b.shape[0]:
        raise AdapterError(f"{module}: the DoRA magnitude has {magnitude.numel()} entries for {b.shape[0]} rows")
    return ModuleReport(module, (b.shape[0], a.shape[1]), r, alpha, scaling,
                        a.numel() + b.numel() + (magnitude.numel() if magnitude is not None else 0),
                        math.sqrt(sum(v * v for v in values)), values, effective_rank(values),
                        {f"{share:.0%}": rank_for_energy(values, share) for share in ENERGY_SHARES},
                        dora=magnitude is not None)


WEIGHTS_NAME, CONFIG_NAME = "adapter_model.safetensors", "adapter_config.json"
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def from_files(files: dict[str, bytes], max_bytes: int = MAX_BYTES) -> AdapterReport:
    """The report of uploaded files by name: adapter_model.safetensors (any *.safetensors) with an optional
    adapter_config.json, or a .zip holding them (read in memory: nothing is written to disk)."""
    if len(files) == 1 and next(iter(files)).lower().endswith(".zip"):
        files = _unzip(next(iter(files.values())), max_bytes)
    pickles = [name for name in files if name.lower().endswith(PICKLES)]
    if pickles:
        raise AdapterError(f"{pickles[0]} is a pickle, which could run code when read: only .safetensors is read "
                           "(PEFT saves adapter_model.safetensors by default)")
    weights = [name for name in files if name.lower().endswith(".safetensors")]
    if len(weights) != 1:
        raise AdapterError("give one adapter_model.safetensors (and optionally its adapter_config.json)"
                           + (f"; got {', '.join(sorted(files))}" if files else ""))
    config = next((data for name, data in files.items() if name.rsplit("/", 1)[-1] == CONFIG_NAME), None)
    return inspect_adapter(files[weights[0]], config, max_bytes)


def _unzip(data: bytes, max_bytes: int) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        wanted = [i for i in archive.infolist() if not i.is_dir()]
        if sum(i.file_size for i in wanted) > max_bytes:
            raise AdapterError(f"the .zip unpacks to more than the {max_bytes / 2**20:,.0f} MiB read here")
        return {i.filename: archive.read(i) for i in wanted}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise AdapterError(f"not a readable .zip file ({e})") from None


def from_path(path: str, max_bytes: int = MAX_BYTES) -> AdapterReport:
    """The report of a folder holding adapter_model.safetensors (and adapter_config.json), or of one file."""
    source = Path(path)
    if source.is_dir():
        names = [source / WEIGHTS_NAME, source / CONFIG_NAME]
        if not names[0].exists():
            found = sorted(p.name for p in source.iterdir() if p.suffix in (".safetensors", *PICKLES))
            raise AdapterError(f"{path}: no {WEIGHTS_NAME} here" + (f" (found {', '.join(found)})" if found else ""))
    elif source.is_file():  # a .safetensors beside its config, a .zip, or whatever from_files will refuse
        names = [source, source.with_name(CONFIG_NAME)] if source.suffix == ".safetensors" else [source]
    else:
        raise AdapterError(f"{path}: no such file or folder")
    files = {}
    for name in names:
        if name.is_file():
            if name.stat().st_size > max_bytes:
                raise AdapterError(f"{name}: {name.stat().st_size / 2**20:,.0f} MiB, more than the "
                                   f"{max_bytes / 2**20:,.0f} MiB read here")
            files[name.name] = name.read_bytes()
    return from_files(files, max_bytes)


CSV_FIELDS = ["module", "out", "in", "rank", "alpha", "scaling", "params", "delta_norm", "effective_rank",
              *(f"rank_{share:.0%}" for share in ENERGY_SHARES), "share", "dora"]


def rows(report: AdapterReport) -> list[dict[str, Any]]:
    """One flat row per module (CSV_FIELDS), for the CSV and the page's table."""
    return [{"module": m.module, "out": m.shape[0], "in": m.shape[1], "rank": m.rank, "alpha": m.alpha,
             "scaling": m.scaling, "params": m.params, "delta_norm": m.delta_norm, "effective_rank": m.effective_rank,
             **{f"rank_{k}": v for k, v in m.rank_for.items()}, "share": m.share, "dora": m.dora}
            for m in report.modules]
