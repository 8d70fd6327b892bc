"""Cost presets: energies per operation on the host and on the chip, per bit crossing host↔chip, and Loihi 2 core
limits, each with its source and whether it is an estimate. Presets are data: the TOML files in `presets/` (`45nm`,
`int8-45nm`, `loihi2`) or a user's file."""
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

PRESET_DIR = Path(__file__).parent / "presets"
OPS = ("mac", "ac", "neuron_update", "spike")
CORE_LIMITS = ("cores_per_chip", "neurons", "synapses", "synaptic_memory_bits", "fan_in_axons")


@dataclass(frozen=True)
class Cost:
    value: float  # pJ per operation (per bit for transfers), or a count for core limits
    source: str
    estimated: bool


@dataclass(frozen=True)
class Preset:
    """Energies per operation on the host and on the chip, per bit crossing host↔chip, and Loihi 2 core limits."""
    name: str
    description: str
    file: str
    host: dict
    chip: dict
    transfer_bit: Cost
    core: dict | None

    def pj(self, placement: str, op: str) -> float:
        return (self.chip if placement == "chip" else self.host)[op].value

    def summary(self) -> dict:
        def costs(table):
            return {k: vars(v) for k, v in table.items()}
        return {"name": self.name, "description": self.description, "file": self.file, "host_pj": costs(self.host),
                "chip_pj": costs(self.chip), "transfer_pj_per_bit": vars(self.transfer_bit)}


def builtin_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(spec: str) -> Preset:
    """A built-in preset by name (`45nm`, `int8-45nm`, `loihi2`) or a user's TOML file by path."""
    path = Path(spec)
    if not path.is_file():
        if spec not in builtin_presets():
            raise UserError(f"--preset {spec}: not a file and not a built-in preset "
                            f"({', '.join(builtin_presets())}).")
        path = PRESET_DIR / f"{spec}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"preset {path} is not valid TOML ({e}).") from None
    host = _cost_table(data, "host", OPS, path, "pj")
    chip = _cost_table(data, "chip", OPS, path, "pj") if "chip" in data else host
    transfer = _cost_table(data, "transfer", ("bit",), path, "pj")["bit"]
    core = _cost_table(data, "core", CORE_LIMITS, path, "value") if "core" in data else None
    return Preset(str(data.get("name", path.stem)), str(data.get("description", "")), str(path), host, chip, transfer,
                  core)


def _cost_table(data: dict, table: str, keys: tuple, path: Path, unit: str) -> dict:
    entries = data.get(table)
    if not isinstance(entries, dict):
        raise UserError(f"preset {path} lacks the [{table}] table.")
    out = {}
    for key in keys:
        entry = entries.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get(unit), (int, float)) or entry[unit] < 0 \
                or not isinstance(entry.get("source"), str) or not isinstance(entry.get("estimated"), bool):
            raise UserError(f"preset {path}: [{table}.{key}] needs {unit} (a number >= 0), source (text) and "
                            "estimated (true or false).")
        out[key] = Cost(float(entry[unit]), entry["source"], entry["estimated"])
    return out


def core_limits(preset: Preset) -> dict:
    """The preset's Loihi 2 core limits, or the built-in `loihi2` preset's."""
    return preset.core if preset.core is not None else load_preset("loihi2").core
