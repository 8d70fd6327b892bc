"""The `snn2hw` command line. Each command is a thin shell: parse options, call the library, print a table."""
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deploy trained TCJA-SNN and GAC + MS-ResNet models to Loihi 2 through Lava.")
# Tables are wide; when output is piped, rich would wrap them at 80 columns.
_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

ArchOpt = typer.Option(None, "--arch", help="Architecture name (see `snn2hw inspect --help`); optional for "
                                            "snn2hw's own checkpoints, which record it.")
ClassesOpt = typer.Option(None, "--num-classes", help="Classifier size, if not the arch default.")
TrustOpt = typer.Option(False, "--trust-pickle", help="Allow unpickling Python objects from the checkpoint "
                                                      "(runs code from the file: only for files you trust).")


def _load(checkpoint: Path, arch, num_classes, trust_pickle):
    from .checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, arch, num_classes, trust_pickle)
    for note in loaded.notes:
        err.print(f"[dim]note: {note}[/dim]")
    return loaded


def load_input(path: Path, model) -> np.ndarray:
    """Inputs stored as `.npy`, batch first, per-sample shape as the model's `input_shape`."""
    if not path.is_file():
        raise UserError(f"--input {path}: no such file.")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise UserError(f"--input {path} is not a readable .npy array ({type(e).__name__}).") from None
    want = tuple(model.input_shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise UserError(f"--input {path} has shape {tuple(x.shape)}; this model takes [N, {', '.join(map(str, want))}].")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise UserError(f"--input {path} has dtype {x.dtype}; expected numbers.")
    if len(x) == 0:
        raise UserError(f"--input {path} holds no samples.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"--input {path} contains NaN or Inf values.")
    return x


def spike_table(title: str, counts: dict[str, np.ndarray]) -> Table:
    table = Table(title=title)
    for col, justify in [("layer", "left"), ("spikes / sample", "right"), ("per step (mean over samples)", "left")]:
        table.add_column(col, justify=justify)
    for name, c in counts.items():
        per_step = " ".join(f"{v:.0f}" for v in c.mean(axis=0))
        table.add_row(name, f"{c.sum(axis=1).mean():.1f}", per_step)
    return table


@app.command()
def inspect(checkpoint: Path, arch: Optional[str] = ArchOpt, num_classes: Optional[int] = ClassesOpt,
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
            trust_pickle: bool = TrustOpt):
    """Architecture table, parameter count, neuron conventions, spike-driven (chip) and host ops."""
    from .describe import describe

    loaded = _load(checkpoint, arch, num_classes, trust_pickle)
    info = describe(loaded.model, loaded.arch)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out.print(f"[bold]{info['arch']}[/bold] ({info['source']}): {info['parameters']:,} parameters, "
              f"T = {info['timesteps']}, input [N, {', '.join(map(str, info['input_shape']))}]", soft_wrap=True)
    table = Table(title="layers")
    for col in ("layer", "type", "output (one sample)", "params", "runs on", "why"):
        table.add_column(col)
    for row in info["layers"]:
        table.add_row(row["name"], row["type"], str(row["output_shape"]), f"{row['params']:,}", row["runs_on"],
                      row["why"])
    out.print(table)
    out.print("neurons: " + "; ".join(f"{n['convention']} ×{n['count']}" for n in info["neuron_conventions"]))


@app.command()
def simulate(checkpoint: Path, input: Path = typer.Option(..., "--input", help="Inputs, .npy, batch first."),
             save: Path = typer.Option(..., "--save", help="Where to write the .npz of outputs and spike counts."),
             arch: Optional[str] = ArchOpt, num_classes: Optional[int] = ClassesOpt,
             backend: str = typer.Option("torch", "--backend", help="torch: the float model."),
             batch_size: int = typer.Option(32, "--batch-size", min=1),
             labels: Optional[Path] = typer.Option(None, "--labels", help="Optional .npy of labels: prints accuracy."),
             trust_pickle: bool = TrustOpt):
    """Run a model on inputs and save `output` and `spike_counts/<layer>` ([N, T]) to an .npz."""
    from .activity import run_model
    from .models.zoo import class_scores
    import torch

    if backend != "torch":
        raise UserError(f"--backend {backend!r} is not available yet; use torch.")
    loaded = _load(checkpoint, arch, num_classes, trust_pickle)
    x = load_input(input, loaded.model)
    y = None
    if labels is not None:
        y = np.load(labels, allow_pickle=False) if labels.is_file() else None
        if y is None or y.shape != (len(x),):
            raise UserError(f"--labels {labels} must be an existing .npy of shape ({len(x)},).")
    output, counts = run_model(loaded.model, x, batch_size)
    _save_npz(save, {"output": output, **{f"spike_counts/{k}": v for k, v in counts.items()}})
    out.print(spike_table(f"{loaded.arch} on {input.name} ({len(x)} samples, backend {backend})", counts))
    if y is not None:
        acc = float((class_scores(loaded.arch, torch.as_tensor(output)).argmax(1).numpy() == y).mean())
        out.print(f"accuracy: {acc:.2%}")
    out.print(f"saved {save}")


def _save_npz(path: Path, arrays: dict) -> None:
    """Write via a temporary file and rename, so a failure never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@app.command()
def train(arch: str = typer.Argument(..., help="tcja-tiny or gac-msresnet-tiny"),
          output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write."),
          seed: int = typer.Option(0, "--seed"), epochs: Optional[int] = typer.Option(None, "--epochs", min=1)):
    """Train a demo model on the digits data (CPU, a few minutes) and save an snn2hw checkpoint."""
    from .checkpoint import save_checkpoint
    from .models.train import RECIPES, train as run_training

    if arch not in RECIPES:
        raise UserError(f"no training recipe for {arch!r}; recipes exist for {', '.join(RECIPES)}.")
    model, options, metrics = run_training(arch, seed=seed, epochs=epochs, log=out.print)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, model, arch, options, metrics=metrics)
    out.print(f"{arch}: test accuracy {metrics['test_accuracy']:.2%} after {metrics['train_seconds']} s; saved {output}")


@app.command()
def demo(outdir: Path = typer.Option(Path("demo-out"), "-o", "--outdir", help="Where to write results.")):
    """Run the bundled demo models end to end on the digits test set."""
    from .demo import run_demo

    run_demo(outdir, out)


def main():
    # torch warns on every forward that padding='same' with an even kernel (TCJA's Conv1d) costs a padded copy.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
