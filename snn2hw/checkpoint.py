"""Loading trained checkpoints as the official training scripts saved them, and saving our own.

Accepted layouts: a bare state_dict (GAC), `{'net': sd, ...}` (TCJA), `{'state_dict': sd}`, `{'model': sd}`,
keys with DataParallel's `module.` prefix, and snn2hw's own `{'snn2hw': {'arch', 'options', ...}, 'state_dict': sd}`,
which carries its arch so `--arch` is optional. Files are read with `weights_only=True`; a pickled whole module
is loaded only when the caller says it trusts the file.
"""
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .files import atomic_path
from .models.zoo import ARCHS, NIR_ARCH, build_model, builder_options, options_from_weights

FORMAT_VERSION = 1
_WRAPPER_KEYS = ("net", "state_dict", "model")
_SHOWN = 3  # how many key names a mismatch message lists
HINT_MIN_FIT = 0.5  # below this share of fitting keys, no arch is named as the closest
_LABELS = {"timesteps": "T", "channels": "width", "sca_kernel": "SCA kernel"}
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # the HDF5 signature, at the start of a file without a user block


@dataclass
class Loaded:
    model: nn.Module
    arch: str
    options: dict  # builder options (num_classes, timesteps, ...) that reproduce the model
    path: Path
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # what our own checkpoints record (metrics, recipe)
    warnings: list[str] = field(default_factory=list)  # what the user must know, e.g. that code from the file ran


def save_checkpoint(path, model: nn.Module, arch: str, options: dict, **meta) -> None:
    with atomic_path(path) as tmp:
        torch.save({"snn2hw": {"format": FORMAT_VERSION, "arch": arch, "options": options, **meta},
                    "state_dict": model.state_dict()}, tmp)


def file_kind(path: Path) -> str:
    """What a file is, by its content: "nir" (a NIR graph: HDF5 with NIR's `version` and `node`), "netx" (a lava-dl
    .net: HDF5 with a `layer` group), "hdf5" (another HDF5 file) or "other" (a torch checkpoint, or not one)."""
    with open(path, "rb") as f:
        if f.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
            return "other"
    import h5py  # only for HDF5 files: a checkpoint never needs it

    try:
        with h5py.File(path, "r") as f:
            if "version" in f and isinstance(f.get("node"), h5py.Group):
                return "nir"
            return "netx" if isinstance(f.get("layer"), h5py.Group) else "hdf5"
    except OSError:  # the signature, then a damaged or truncated file
        return "hdf5"


def _check_not_hdf5(path: Path) -> None:
    """Refuse an HDF5 file, saying what it is: torch.load's own message ("Weights only load failed ...
    weights_only=False") would send the user the wrong way."""
    kind = file_kind(path)
    if kind == "nir":
        raise UserError(f"{path} is a NIR graph, not a PyTorch checkpoint: give it to the snn2hw commands as it is "
                        "(with --timesteps T and --dt where the graph records none), or in Python to "
                        "snn2hw.nir_import.load_nir.")
    if kind == "netx":
        raise UserError(f"{path} is a lava-dl netx network (.net), not a PyTorch checkpoint: snn2hw takes it as "
                        "NET.net with --timesteps.")
    if kind == "hdf5":
        raise UserError(f"{path} is an HDF5 file, neither a PyTorch checkpoint nor a NIR graph or netx .net that "
                        "snn2hw recognises.")


def _read(path: Path, trust_pickle: bool, warnings: list[str]):
    """The file's content, read with `weights_only`; only a file that needs unpickling code is read with it, if
    trusted, and a warning says so."""
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file.")
    _check_not_hdf5(path)
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if not unsafe:
            raise UserError(f"checkpoint {path} is not a readable PyTorch file ({_first_line(e)}).") from None
        if not trust_pickle:
            raise UserError(f"checkpoint {path} contains pickled Python objects ({unsafe.group(1)}), which could run "
                            "code when loaded; re-save it as a state_dict, or pass --trust-pickle only if you trust "
                            "where it came from.") from None
        warnings.append(f"unpickled Python objects ({unsafe.group(1)}, …) from {path}, running code from the file, "
                        "because --trust-pickle was given.")
    except Exception as e:  # torch raises RuntimeError/EOFError/zipfile errors for damaged files
        raise UserError(f"checkpoint {path} is not a readable PyTorch file ({_first_line(e)}).") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise UserError(f"checkpoint {path} is not a readable PyTorch file ({_first_line(e)}).") from None


def _check_archive(path: Path) -> None:
    """A zip checkpoint (torch's format since 1.6) whose members fail their CRC is refused before it is read:
    torch.load does not check, and loads the damaged bytes as weights."""
    if not zipfile.is_zipfile(path):
        return  # a legacy torch file, or no archive at all (torch.load says which)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise UserError(f"checkpoint {path} is a damaged archive ({_first_line(e)}).") from None
    if bad is not None:
        raise UserError(f"checkpoint {path} is damaged: its member {bad} fails its CRC check.")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _unwrap(obj, path: Path, notes: list[str]) -> tuple[dict, dict]:
    """→ (state_dict with plain keys, our own metadata or {})."""
    meta = {}
    if isinstance(obj, nn.Module):
        notes.append(f"loaded a pickled {type(obj).__name__} from {path} because --trust-pickle was given")
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("snn2hw"), dict):
        meta = obj["snn2hw"]
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                notes.append(f"loaded a pickled {type(inner).__name__} from {path} because --trust-pickle was given")
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not (isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in obj.items())):
        raise UserError(f"checkpoint {path} holds no state_dict (expected a dict of tensors, or one under "
                        f"{', '.join(repr(k) for k in _WRAPPER_KEYS)}).")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
        notes.append("stripped the DataParallel 'module.' prefix")
    return obj, meta


def _mismatch(model: nn.Module, sd: dict) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, (key, got, expected shape) of the mis-shaped), each in the model's order."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shaped = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in expected.items()
              if k in sd and sd[k].shape != v.shape]
    return missing, unexpected, shaped


def _fit(arch: str, sd: dict) -> float:
    """Fraction of the arch's keys that the state_dict has with the right shape, the arch built with the options the
    weights determine (on meta: no allocation); 0 where those options build nothing."""
    try:
        options = options_from_weights(arch, sd)
        classes = _held_classes(arch, sd, options)
        expected = build_model(arch, classes, device="meta", **options).state_dict()
    except (TypeError, ValueError, RuntimeError):
        return 0.0
    hits = sum(1 for k, v in expected.items() if k in sd and sd[k].shape == v.shape)
    return hits / max(len(expected), len(sd))


def best_fitting_arch(sd: dict) -> tuple[str, float]:
    scores = {name: _fit(name, sd) for name in ARCHS if name != NIR_ARCH}
    best = max(scores, key=scores.get)
    return best, scores[best]


def _arch_from_weights(path: Path, sd: dict, notes: list[str]) -> str:
    """The one arch whose keys and shapes all fit `sd` (said in a note), or a UserError naming the candidates."""
    scores = {name: _fit(name, sd) for name in ARCHS if name != NIR_ARCH}
    fitting = [name for name, score in scores.items() if score == 1.0]
    if len(fitting) == 1:
        notes.append(f"arch {fitting[0]}: the only one whose keys and shapes all fit the checkpoint")
        return fitting[0]
    if fitting:
        raise UserError(f"checkpoint {path} fits several architectures ({', '.join(fitting)}): pass --arch.")
    best = max(scores, key=scores.get)
    hint = f" (closest: {best}, {scores[best]:.0%} of its keys fit)" if scores[best] >= HINT_MIN_FIT else ""
    raise UserError(f"checkpoint {path} fits no known architecture: pass --arch{hint}; known: {', '.join(ARCHS)}.")


def _held_classes(arch: str, sd: dict, options: dict) -> int | None:
    """The class count `sd`'s classifier holds: the arch default where every shape fits it, else the count that
    makes only the classifier's shapes fit; None where other shapes differ too."""
    default = ARCHS[arch].num_classes
    _, _, shaped = _mismatch(build_model(arch, device="meta", **options), sd)
    if not shaped:
        return default
    if any(got[1:] != want[1:] for _, got, want in shaped):
        return None
    ratios = {got[0] * default / want[0] for _, got, want in shaped}
    if len(ratios) == 1:
        n = ratios.pop()
        return int(n) if n == int(n) and n > 0 else None
    return None


def _describe(path: Path, arch: str, missing, unexpected, shaped, order: list[str]) -> str:
    """One sentence: every kind of difference, a few keys each, led by the first in the model's key `order`."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({', '.join(missing[:_SHOWN])}{', …' if len(missing) > _SHOWN else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:_SHOWN])}"
                     f"{', …' if len(unexpected) > _SHOWN else ''})")
    if shaped:
        parts.append(f"{len(shaped)} mis-shaped ({', '.join(f'{k} {g} vs {w}' for k, g, w in shaped[:_SHOWN])}"
                     f"{', …' if len(shaped) > _SHOWN else ''})")
    # The first difference in the model's own order usually explains the rest (a width or T propagates forward).
    differ = set(missing) | {k for k, _, _ in shaped}
    first = next((k for k in order if k in differ), None)
    lead = f" (the first, in the model's order: {first})" if first and len(missing) + len(shaped) > 1 else ""
    return f"checkpoint {path} does not fit arch {arch}{lead}: " + "; ".join(parts)


def _check_values(path: Path, sd: dict) -> None:
    """Refuse tensors that are not dense real weights, and values no trained network has: they would fold and
    quantize into garbage without an error (BatchNorm's step counter is the one integer tensor)."""
    for key, value in sd.items():
        if value.layout != torch.strided or value.is_meta:
            how = "a meta tensor (no data)" if value.is_meta else f"stored {value.layout}"
            raise UserError(f"checkpoint {path}: tensor {key} is {how}, not dense weights.")
        if value.is_complex() or not (value.is_floating_point() or key.endswith("num_batches_tracked")):
            raise UserError(f"checkpoint {path}: tensor {key} holds {value.dtype} values, not real weights.")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UserError(f"checkpoint {path}: tensor {key} holds NaN or Inf values.")
        if key.endswith("running_var") and (value <= 0).any():
            raise UserError(f"checkpoint {path}: BatchNorm variance {key} has values <= 0 "
                            f"(min {value.min().item():g}); a variance must be positive.")


def _options(path: Path, arch: str, sd: dict, recorded: dict, timesteps: int | None, notes: list[str]) -> dict:
    """The builder options of `arch` for `sd`: what its weights determine (T, widths, kernels), else `--timesteps`
    and the options the file records, else the official defaults, T said in a note. One sentence, naming both
    values, where a given option contradicts the weights."""
    takes = builder_options(arch)
    unknown = sorted(set(recorded) - set(takes) - {"num_classes"})
    if unknown:
        raise UserError(f"checkpoint {path} records option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}, "
                        f"which {arch} does not take (it takes num_classes, {', '.join(takes)}).")
    given = dict(recorded)
    if timesteps is not None:
        if "timesteps" not in takes:
            raise UserError(f"--timesteps: {arch} has no T option.")
        if given.get("timesteps", timesteps) != timesteps:
            raise UserError(f"checkpoint {path} records T = {given['timesteps']}; --timesteps {timesteps} "
                            "contradicts it.")
        given["timesteps"] = timesteps
    found = options_from_weights(arch, sd)
    for key, value in found.items():
        if key in given and given[key] != value:
            what = "--timesteps" if key == "timesteps" and timesteps is not None else f"its recorded {key}"
            raise UserError(f"checkpoint {path} was trained with {_LABELS.get(key, key)} = {value} (its weights "
                            f"say so); {what} {given[key]} contradicts it.")
        if value != takes[key] and key not in recorded:
            notes.append(f"{_LABELS.get(key, key)} = {value}, read from the weights ({arch}'s official default is "
                         f"{takes[key]})")
    options = {**given, **found}
    if "timesteps" in takes and "timesteps" not in options:
        notes.append(f"T = {takes['timesteps']}, {arch}'s official default: the checkpoint does not record T (pass "
                     "--timesteps if it was trained with another)")
    return options


def load_checkpoint(path, arch: str | None = None, num_classes: int | None = None,
                    trust_pickle: bool = False, timesteps: int | None = None) -> Loaded:
    """A checkpoint as `arch` (None: what the file records, else the one arch its weights fit), with the builder
    options its weights determine (`_options`; `timesteps` where they do not)."""
    path = Path(path)
    notes: list[str] = []
    warnings: list[str] = []
    sd, meta = _unwrap(_read(path, trust_pickle, warnings), path, notes)
    _check_values(path, sd)
    if num_classes is not None and num_classes < 1:
        raise UserError(f"--num-classes {num_classes}: a classifier needs at least one class.")
    recorded = meta.get("options", {})
    if not isinstance(recorded, dict) or not all(isinstance(k, str) for k in recorded):
        raise UserError(f"checkpoint {path} records options that are not a dict of names: {recorded!r}.")
    if arch is None:
        arch = meta.get("arch")
        if arch is not None and arch not in ARCHS:
            raise UserError(f"checkpoint {path} records arch {arch!r}, which snn2hw does not support; known: "
                            f"{', '.join(ARCHS)}.")
    if arch == NIR_ARCH:
        raise UserError(f"checkpoint {path}: arch {NIR_ARCH} is built from a NIR graph file, not from a checkpoint.")
    if arch is None:
        arch = _arch_from_weights(path, sd, notes)
    if arch not in ARCHS:
        raise UserError(f"unknown --arch {arch!r}; known: {', '.join(ARCHS)}.")
    options = _options(path, arch, sd, recorded, timesteps, notes)
    held = _held_classes(arch, sd, {k: v for k, v in options.items() if k != "num_classes"})
    if num_classes is not None:
        if held is not None and num_classes != held:  # checked on meta tensors: a huge count allocates nothing
            raise UserError(f"--num-classes {num_classes}: the classifier of checkpoint {path} holds {held} classes.")
        options["num_classes"] = num_classes
    elif "num_classes" not in options and held is not None and held != ARCHS[arch].num_classes:
        options["num_classes"] = held
        notes.append(f"inferred --num-classes {held} from the classifier's shape")
    try:
        model = build_model(arch, **options)
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {path}: {arch} cannot be built with options {options} ({_first_line(e)}).") \
            from None
    missing, unexpected, shaped = _mismatch(model, sd)
    if missing or unexpected or shaped:
        best, score = best_fitting_arch(sd)
        hint = f" (best fit: {best}, {score:.0%} of keys match)" if best != arch and score >= HINT_MIN_FIT else ""
        raise UserError(_describe(path, arch, missing, unexpected, shaped, list(model.state_dict())) + hint + ".")
    model.load_state_dict(sd, strict=True)
    return Loaded(model.eval(), arch, options, path, notes, meta, warnings)


def load_model(path, arch: str | None = None, num_classes: int | None = None, trust_pickle: bool = False,
               timesteps: int | None = None, dt: float | None = None) -> Loaded:
    """What a user gives snn2hw as a model, by its content: a NIR graph (`nir_import.load_nir`, run with step `dt`;
    arch, classes and pickles do not apply to it) or a checkpoint (`load_checkpoint`; `dt` does not apply)."""
    path = Path(path)
    if path.is_file() and file_kind(path) == "nir":
        given = [flag for flag, value in (("--arch", arch), ("--num-classes", num_classes),
                                          ("--trust-pickle", trust_pickle or None)) if value is not None]
        if given:
            raise UserError(f"{given[0]} has no effect on {path}, a NIR graph: the graph itself is the network.")
        from .nir_import import load_nir  # it imports this module
        return load_nir(path, dt, timesteps)
    if dt is not None:
        raise UserError(f"--dt has no effect on {path}, which is not a NIR graph (a checkpoint's steps are its "
                        "model's own).")
    return load_checkpoint(path, arch, num_classes, trust_pickle, timesteps)
