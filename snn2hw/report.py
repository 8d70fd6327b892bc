"""`report.md` of a deployment: what was folded, quantized and cut, and why."""
from . import ir
from .residual import residual_terms


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def export_report(manifest: dict, compiled) -> str:
    src = manifest["source"]
    parts = [
        f"# Deployment of {src['arch']} to Loihi 2",
        f"Source `{src['checkpoint']}` (sha256 `{src['sha256'][:16]}…`), options {src['options']}, T = "
        f"{manifest['timesteps']}, TCJA gates: `{manifest['tcja']}`, snn2hw {manifest['snn2hw_version']}.",
        "## What the compiler did, in order",
        "\n".join(f"1. {note}" for note in manifest["passes"]),
        "## Segments (execution order)",
        _table(["segment", "runs on", "layers", "neurons", "synapse weights", "latency (Lava steps)", "files"],
               [[s["name"], s["placement"], s["layers"], s["neurons"], s["synapse_weights"], s.get("latency"),
                 ", ".join(f"`{f}`" for f in s["files"].values())] for s in manifest["segments"]]),
        "lava-dl netx (`.net`): " + "; ".join(
            f"{s['name']}: " + ("written, bit-exact" if s["netx"].get("bit_exact") else
                                f"written, not bit-exact at {', '.join(s['netx'].get('inexact_layers', []))}"
                                if s["netx"]["written"] else f"not written ({s['netx']['why_not']})")
            for s in manifest["segments"] if s["placement"] == "chip") + ".",
        "Host segments hold what is not spike-driven or not causal: the first synapse on pixels and the GAC "
        "encoder, TCJA's gates (each output step depends on all T input steps), and the readout.",
        "## Cuts (tensors crossing between host and chip)",
        _table(["tensor", "to", "direction", "kind", "shape", "values per step", "waits for the whole window"],
               [[c["tensor"], c["to"], c["direction"], c["kind"], c["shape"], c["values_per_step"],
                 "yes" if c["waits_for_window"] else "no"] for c in manifest["cuts"]]),
        "## Quantization (Loihi 2 fixed point)",
        "Each chip neuron layer has one integer scale σ shared by all its synapses: 8-bit even weights "
        "W·σ/2^q, threshold vth = θ·σ (fires when v > vth·64), bias as a 13-bit mantissa with a 3-bit exponent, "
        "dv = 4096·(1 - decay), du = 4095. σ is the largest the 8-bit weights allow unless the input port's "
        "headroom (|a| < 2^16 on the calibration data) or the 17-bit threshold caps it.",
        _table(["layer", "σ", "vth", "dv", "bias exp", "weight SQNR dB", "per-channel scale cost dB",
                "payload bits", "notes"],
               [[r["layer"], f"{r['scale']:.1f}", r.get("vth"), r.get("dv"), r.get("bias_exp"),
                 " ".join(str(s["weight_sqnr_db"]) for s in r["synapses"]),
                 " ".join(str(s["per_channel_scale_cost_db"]) for s in r["synapses"]),
                 " ".join(str(s["payload_frac_bits"]) for s in r["synapses"]), "; ".join(r["notes"])]
                for r in manifest["layers"]]),
    ]
    sums = residual_terms(compiled.fixed)
    if sums:
        parts += ["## The MS-ResNet membrane shortcut",
                  "The residual stream is real-valued and Loihi neurons only receive synaptic input, so it is "
                  "unrolled: every neuron that reads the stream gets one synapse group from each earlier block's "
                  "spiking layer (composed with the 1x1 downsample convs on the way) plus the encoder's share, "
                  "which the host computes and injects as a graded current. In Lava each synapse adds one step, "
                  "so older terms wait (relay neurons) until all terms of a sum arrive together.",
                  _table(["sum", "depth", "terms (source + delay)"],
                         [[s.add, s.depth, ", ".join(f"{t.source}+{t.delay}" for t in s.terms)] for s in sums])]
    host_gates = [n for n in compiled.fixed.nodes.values() if isinstance(n, ir.HostModule)]
    if manifest["tcja"] == "fold":
        parts += ["## TCJA gates", "Folded into static per-channel scales (`--tcja fold`): the backbone runs on "
                  "chip in one piece; the accuracy cost is what `snn2hw simulate --ladder --tcja fold` reports."]
    elif any("TCJA" in type(n.module).__name__ for n in host_gates):
        parts += ["## TCJA gates", "Run on the host (`--tcja host`, exact): each gate needs the whole window, so "
                  "the chip segment after it starts only when the previous one has finished all T steps."]
    return "\n\n".join(parts) + "\n"
