"""Cost presets: energies per operation on the host and on the chip, per bit crossing host↔chip, and the Loihi 2
chip model's constants (core limits, times per operation, static power), each with its source and its basis. Presets
are data: the TOML files in `presets/` (`45nm`, `int8-45nm`, `loihi2`) or a user's file."""
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

PRESET_DIR = Path(__file__).parent / "presets"
OPS = ("mac", "ac", "neuron_update", "spike")
# The Loihi 2 chip model (`resources`, `timing`): per-core limits, times per operation, static power.
CORE_LIMITS = ("cores_per_chip", "lif_neurons", "dense_weights", "conv_kernel_weights")
TIMES = ("synop_ns", "neuron_update_ns", "spike_ns", "host_link_bits_per_us")
POWER = ("static_w_per_chip",)
# How a number was obtained: measured on Loihi 2 silicon, published, fitted to silicon measurements, or ours.
BASES = ("measured on silicon", "document", "calibrated", "estimated")
NOT_MEASURED = BASES[2:]  # neither measured on silicon nor published


@dataclass(frozen=True)
class Cost:
    value: float  # pJ per operation (per bit for transfers), or the unit its key names (ns, W, a count)
    source: str
    basis: str  # one of BASES

    @property
    def estimated(self) -> bool:
        """Not a published or measured figure: fitted or ours."""
        return self.basis in NOT_MEASURED


@dataclass(frozen=True)
class Preset:
    """Energies per operation on the host and on the chip, per bit crossing host↔chip, and the Loihi 2 chip model's
    core limits, times and static power (None where the preset has no such table: `chip_model` then takes the
    built-in loihi2 preset's)."""
    name: str
    description: str
    file: str
    host: dict
    chip: dict
    transfer_bit: Cost
    core: dict | None
    time: dict | None
    power: dict | None

    def pj(self, placement: str, op: str) -> float:
        return (self.chip if placement == "chip" else self.host)[op].value

    def summary(self) -> dict:
        def costs(table):
            return {k: vars(v) for k, v in table.items()}
        return {"name": self.name, "description": self.description, "file": self.file, "host_pj": costs(self.host),
                "chip_pj": costs(self.chip), "transfer_pj_per_bit": vars(self.transfer_bit),
                "static_power": costs(self.power or {})}


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
    optional = {table: _cost_table(data, table, keys, path, "value") if table in data else None
                for table, keys in (("core", CORE_LIMITS), ("time", TIMES), ("power", POWER))}
    return Preset(str(data.get("name", path.stem)), str(data.get("description", "")), str(path), host, chip, transfer,
                  **optional)


def _cost_table(data: dict, table: str, keys: tuple, path: Path, unit: str) -> dict:
    """The `keys` of `[table]`, each a finite number (> 0 for core limits and times, which the chip model divides
    by; >= 0 otherwise: an energy or a power may be 0) with its source and basis."""
    entries = data.get(table)
    if not isinstance(entries, dict):
        raise UserError(f"preset {path} lacks the [{table}] table.")
    positive = table in ("core", "time")
    out = {}
    for key in keys:
        entry = entries.get(key)
        value = entry.get(unit) if isinstance(entry, dict) else None
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (positive and value == 0) \
                or not isinstance(entry.get("source"), str) or entry.get("basis") not in BASES:
            raise UserError(f"preset {path}: [{table}.{key}] needs {unit} (a finite number "
                            f"{'> 0' if positive else '>= 0'}, got {value!r}), source (text) and basis (one of: "
                            f"{', '.join(BASES)}).")
        out[key] = Cost(float(entry[unit]), entry["source"], entry["basis"])
    return out


def chip_model(preset: Preset) -> tuple[dict, dict]:
    """(core limits, times) of the Loihi 2 chip model: the preset's tables, or the built-in `loihi2` preset's. The
    static power is the preset's own (`Preset.power`): a preset without it prices no static energy."""
    builtin = None if preset.core is not None and preset.time is not None else load_preset("loihi2")
    return (preset.core or builtin.core), (preset.time or builtin.time)
