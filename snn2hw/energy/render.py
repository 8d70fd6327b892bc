"""Presenting an energy report (`report.build_report`): terminal tables (rich) and a self-contained HTML page whose
plots are inline PNGs, so a browser shows it without network access."""
import base64
import html
import io
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..files import write_text_atomic


def fmt_energy(mj: float) -> str:
    """An energy in the unit that keeps 1-3 digits before the point (the demo models spend nJ, ImageNet ones mJ)."""
    for unit, scale in (("mJ", 1.0), ("µJ", 1e-3), ("nJ", 1e-6), ("pJ", 1e-9)):
        if abs(mj) >= scale:
            return f"{mj / scale:.3g} {unit}"
    return "0" if mj == 0 else f"{mj / 1e-9:.3g} pJ"


def fmt_count(value: float) -> str:
    if value == 0:
        return "-"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def headline(report: dict) -> str:
    paper, faithful = (report["modes"][m]["total_energy_mj"] for m in ("paper", "faithful"))
    ratio = f" ({faithful / paper:.1f}× the paper's)" if paper else ""
    where = f"{report['backend']} backend, {report['samples']} samples" if "backend" in report else \
        f"analytic, firing rate {report['firing_rate_spec']}"
    return (f"{report['arch']} ({where}), T = {report['timesteps']}, preset {report['preset']}: per sample "
            f"paper {fmt_energy(paper)}, faithful {fmt_energy(faithful)}{ratio}; reported mode: {report['mode']}")


# --------------------------------------------------------------------------------------------------------- terminal


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in ("layer", "row", "why", "tensor", "segment", "op") else "right")
    return table


def comparison_table(report: dict) -> Table:
    table = _table("paper vs faithful, row by row (per sample)", ["row", "paper", "faithful", "why"])
    for row in report["comparison"]:
        table.add_row(row["row"], fmt_energy(row["paper_mj"]), fmt_energy(row["faithful_mj"]), row["why"])
    return table


def layer_table(report: dict) -> Table:
    mode = report["mode"]
    table = _table(f"{mode} mode per layer (per sample; totals over T)",
                   ["layer", "segment", "op", "MACs", "ACs", "neuron updates", "spikes", "energy"])
    for row in report["layers"]:
        if row["counted"] and row["energy_mj"] > 0:
            table.add_row(row["name"], row["segment"] or row["placement"], row["op"], fmt_count(row["macs"]),
                          fmt_count(row["acs"]), fmt_count(row["neuron_updates"]), fmt_count(row["spikes"]),
                          fmt_energy(row["energy_mj"]))
    return table


def cut_table(report: dict) -> Table:
    table = _table("host↔chip transfers (faithful)", ["tensor", "to", "direction", "kind", "values / step",
                                                      "bits / value", "energy"])
    for cut in report["modes"]["faithful"]["cuts"]:
        table.add_row(cut["tensor"], cut["to"], cut["direction"], cut["kind"], f"{cut['values_per_step']:,}",
                      str(cut["bits_per_value"]), fmt_energy(cut["energy_mj"]))
    return table


def resource_table(report: dict) -> Table:
    res = report["loihi2"]
    table = _table(f"Loihi 2 (model: the compiler's mechanisms, calibrated on PilotNet LIF): {resource_summary(res)}",
                   ["layer", "neurons", "synapses", "stored weights", "max fan-in", "neurons / core", "cores",
                    "bound by"])
    flagged = {v["layer"] for v in res["violations"]}
    for row in res["layers"]:
        name = f"[red]{row['layer']}[/red]" if row["layer"] in flagged else row["layer"]
        table.add_row(name, f"{row['neurons']:,}", f"{row['synapses']:,}", f"{row['weights']:,}",
                      f"{row['max_fan_in']:,}", f"{row['neurons_per_core']:,}", str(row["cores"] or "-"),
                      row["limited_by"])
    return table


def resource_summary(res: dict) -> str:
    system = res.get("system")
    fits = "" if system is None else \
        f"; {'fits' if system['fits'] else 'does not fit'} {system['name']} ({system['chips']:,} chip(s))"
    return (f"{res['cores']:,} cores, {res['chips']:,} chip(s) of {res['cores_per_chip']}{fits}; "
            f"{res['time_per_step_us']:,.1f} µs per step ({res['io_share']:.0%} host I/O), "
            f"{res['latency_ms']:,.3g} ms per sample; chip energy {fmt_energy(res['dynamic_mj'])} dynamic + "
            f"{fmt_energy(res['static_mj'])} static")


def not_measured(report: dict) -> list[str]:
    """The preset's numbers and the chip model's constants that are not published or measured on silicon."""
    costs = report["preset_costs"]
    places = ("host",) if costs["chip_pj"] == costs["host_pj"] else ("host", "chip")
    tables = [(f"{where} {op}", c) for where in places for op, c in costs[f"{where}_pj"].items()]
    tables += [(f"core {k}", c) for k, c in report["loihi2"]["limits"].items()]
    tables += [(f"time {k}", c) for k, c in report["loihi2"]["times"].items()]
    return [f"{name} ({c['basis']})" for name, c in tables if c["basis"] in ("calibrated", "estimated")]


def print_report(report: dict, console: Console) -> None:
    console.print(headline(report), soft_wrap=True)
    console.print(comparison_table(report))
    console.print(layer_table(report))
    if report["modes"]["faithful"]["cuts"]:
        console.print(cut_table(report))
    console.print(resource_table(report))
    for v in report["loihi2"]["violations"]:
        console.print(f"[red]limit exceeded:[/red] {v['message']}", soft_wrap=True)
    console.print(f"[dim]not measured on silicon nor published, in preset {report['preset']} and the chip model: "
                  f"{', '.join(not_measured(report)) or 'none'} (sources in the JSON)[/dim]", soft_wrap=True)


# ------------------------------------------------------------------------------------------------------------- HTML


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display). Imported here, not at the top: only the HTML
    report plots, and importing pyplot would add about 0.4 s to every start of the CLI, which imports this module."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _layer_energy_plot(report: dict) -> str:
    """Faithful energy per layer, split into MAC, AC, neuron-update and spike energy (stacked bars)."""
    plt = _pyplot()
    rows = [r for r in report["modes"]["faithful"]["layers"] if r["energy_mj"] > 0]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.5))
    left = [0.0] * len(rows)
    for op, colour in (("mac", "#d95f02"), ("ac", "#1b9e77"), ("neuron_update", "#7570b3"), ("spike", "#e7298a")):
        widths = [r["energy_split_mj"][op] for r in rows]
        ax.barh(range(len(rows)), widths, left=left, color=colour, label=op.replace("_", " "))
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(rows)), [f"{r['name']} ({r['placement']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("energy per sample (mJ)")
    ax.set_title("faithful energy per layer")
    ax.legend(fontsize=8)
    return _png(fig)


def _firing_rate_plot(report: dict) -> str:
    """Firing rate of every neuron layer at every step (spikes per neuron), as a heat map."""
    plt = _pyplot()
    names = list(report["firing_rate"])
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.5))
    image = ax.imshow([report["firing_rate"][n] for n in names], aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xticks(range(report["timesteps"]))
    ax.set_xlabel("time step")
    ax.set_title("firing rate per layer and step")
    fig.colorbar(image, ax=ax, label="spikes per neuron")
    return _png(fig)


def _share_plot(report: dict) -> str:
    """Host compute, chip compute and host↔chip transfers in the faithful total, beside the paper's total."""
    plt = _pyplot()
    faithful, paper = report["modes"]["faithful"], report["modes"]["paper"]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    bottom = 0.0
    for key, colour in (("host_mj", "#d95f02"), ("chip_mj", "#1b9e77"), ("transfer_mj", "#7570b3")):
        ax.bar(["faithful"], [faithful[key]], bottom=bottom, color=colour, label=key[:-3])
        bottom += faithful[key]
    ax.bar(["paper"], [paper["total_energy_mj"]], color="#999999", label="paper total")
    ax.set_ylabel("energy per sample (mJ)")
    ax.set_title("host vs chip share")
    ax.legend(fontsize=8)
    return _png(fig)


def _html_table(columns: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _layer_rows(mode: dict) -> list[list]:
    return [[r["name"], r["segment"] or r["placement"], r["op"], r["category"], fmt_count(r["macs"]),
             fmt_count(r["acs"]), fmt_count(r["neuron_updates"]), fmt_count(r["spikes"]), fmt_energy(r["energy_mj"]),
             r["note"]] for r in mode["layers"]]


def render_html(report: dict) -> str:
    columns = ["layer", "segment", "op", "row", "MACs", "ACs", "neuron updates", "spikes", "energy", "note"]
    res = report["loihi2"]
    sections = [
        f"<h1>snn2hw energy report: {html.escape(report['arch'])}</h1>",
        f"<p>{html.escape(headline(report))}. {html.escape(report['units'])}.</p>",
        "<h2>Paper vs faithful, row by row</h2>",
        _html_table(["row", "paper", "faithful", "why they differ"],
                    [[r["row"], fmt_energy(r["paper_mj"]), fmt_energy(r["faithful_mj"]), r["why"]]
                     for r in report["comparison"]]),
        "<h2>Plots</h2>", _share_plot(report), _layer_energy_plot(report), _firing_rate_plot(report),
        "<h2>Faithful mode per layer (totals over T)</h2>",
        _html_table(columns, _layer_rows(report["modes"]["faithful"])),
        "<h2>Host↔chip transfers</h2>",
        _html_table(["tensor", "to", "direction", "kind", "values / step", "bits / value", "energy"],
                    [[c["tensor"], c["to"], c["direction"], c["kind"], c["values_per_step"], c["bits_per_value"],
                      fmt_energy(c["energy_mj"])] for c in report["modes"]["faithful"]["cuts"]]),
        "<h2>Paper mode per layer</h2>", _html_table(columns, _layer_rows(report["modes"]["paper"])),
        f"<h2>Loihi 2: {html.escape(resource_summary(res))}</h2>",
        _html_table(["layer", "neurons", "synapses", "stored weights", "conv kernel weights", "dense fan-in",
                     "max fan-in", "neurons / core", "cores", "bound by"],
                    [[r["layer"], r["neurons"], r["synapses"], r["weights"], r["conv_kernel_weights"],
                      r["dense_fan_in"], r["max_fan_in"], r["neurons_per_core"], r["cores"], r["limited_by"]]
                     for r in res["layers"]]),
        "".join(f'<p class="bad">limit exceeded: {html.escape(v["message"])}</p>' for v in res["violations"]),
        _html_table(["chip model constant", "value", "basis", "source"],
                    [[f"core {k}", v["value"], v["basis"], v["source"]] for k, v in res["limits"].items()]
                    + [[f"time {k}", v["value"], v["basis"], v["source"]] for k, v in res["times"].items()]
                    + [[f"power {k}", v["value"], v["basis"], v["source"]]
                       for k, v in report["preset_costs"]["static_power"].items()]),
        f"<h2>Cost preset {html.escape(report['preset'])}</h2>",
        _html_table(["where", "operation", "pJ", "basis", "source"],
                    [[where, op, c["value"], c["basis"], c["source"]] for where in ("host", "chip")
                     for op, c in report["preset_costs"][f"{where}_pj"].items()]
                    + [["link", "bit", report["preset_costs"]["transfer_pj_per_bit"]["value"],
                        report["preset_costs"]["transfer_pj_per_bit"]["basis"],
                        report["preset_costs"]["transfer_pj_per_bit"]["source"]]]),
    ]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}.bad{color:#b00}")
    title = f"snn2hw energy: {html.escape(report['arch'])}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style></head>"
            f"<body>{''.join(sections)}</body></html>")


def write_html(report: dict, path: Path) -> None:
    write_text_atomic(path, render_html(report))
