"""Presenting an energy report (`report.build_report`): terminal tables (rich) and a self-contained HTML page whose
plots are inline PNGs, so a browser shows it without network access."""
import base64
import html
import io
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..files import write_text_atomic
from .presets import NOT_MEASURED


def fmt_energy(mj: float) -> str:
    """An energy in the unit that keeps 1-3 digits before the point (the demo models spend nJ, ImageNet ones mJ)."""
    for unit, scale in (("mJ", 1.0), ("µJ", 1e-3), ("nJ", 1e-6), ("pJ", 1e-9)):
        if abs(mj) >= scale:
            return f"{mj / scale:.3g} {unit}"
    return "0" if mj == 0 else f"{mj / 1e-9:.3g} pJ"


def energy_unit(values_mj) -> tuple[str, float]:
    """The one unit a table shows its energies in: the largest that keeps the table's largest value at least 1."""
    top = max((abs(v) for v in values_mj), default=0.0)
    for unit, scale in (("mJ", 1.0), ("µJ", 1e-3), ("nJ", 1e-6)):
        if top >= scale:
            return unit, scale
    return "pJ", 1e-9


def fmt_in(mj: float, scale: float) -> str:
    """An energy in a table's unit (`energy_unit`): three decimals, or three significant digits below 0.001."""
    value = mj / scale
    return "0" if value == 0 else f"{value:,.3f}" if abs(value) >= 1e-3 else f"{value:.2e}"


PART_COLOURS = {"host compute": "#d95f02", "chip dynamic": "#1b9e77", "host↔chip transfers": "#7570b3",
                "chip static": "#666666", "total (faithful)": "#000000", "paper convention": "#999999"}


def totals(report: dict) -> list[tuple[str, float]]:
    """(part, mJ per sample) of the faithful total: host compute, chip dynamic, host↔chip transfers, static."""
    faithful = report["modes"]["faithful"]
    return [("host compute", faithful["host_mj"]), ("chip dynamic", faithful["chip_mj"]),
            ("host↔chip transfers", faithful["transfer_mj"]), ("chip static", faithful.get("static_mj", 0.0)),
            ("total (faithful)", faithful["total_energy_mj"]), ("paper convention", report["modes"]["paper"]
                                                                  ["total_energy_mj"])]


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


def totals_table(report: dict) -> Table:
    unit, scale = energy_unit(v for _, v in totals(report))
    table = _table("energy per sample", ["part", f"energy ({unit})"])
    for part, mj in totals(report):
        table.add_row(part, fmt_in(mj, scale))
    return table


def comparison_table(report: dict) -> Table:
    unit, scale = energy_unit(v for r in report["comparison"] for v in (r["paper_mj"], r["faithful_mj"]))
    table = _table("paper vs faithful, row by row (per sample)", ["row", f"paper ({unit})", f"faithful ({unit})",
                                                                  "why"])
    for row in report["comparison"]:
        table.add_row(row["row"], fmt_in(row["paper_mj"], scale), fmt_in(row["faithful_mj"], scale), row["why"])
    return table


def layer_table(report: dict) -> Table:
    mode = report["mode"]
    rows = [r for r in report["layers"] if r["counted"] and r["energy_mj"] > 0]
    unit, scale = energy_unit(r["energy_mj"] for r in rows)
    table = _table(f"{mode} mode per layer (per sample; totals over T)",
                   ["layer", "segment", "op", "MACs", "ACs", "neuron updates", "spikes", f"energy ({unit})"])
    for row in rows:
        table.add_row(row["name"], row["segment"] or row["placement"], row["op"], fmt_count(row["macs"]),
                      fmt_count(row["acs"]), fmt_count(row["neuron_updates"]), fmt_count(row["spikes"]),
                      fmt_in(row["energy_mj"], scale))
    return table


def cut_table(report: dict) -> Table:
    cuts = report["modes"]["faithful"]["cuts"]
    unit, scale = energy_unit(c["energy_mj"] for c in cuts)
    table = _table("host↔chip transfers (faithful)", ["tensor", "to", "direction", "kind", "values / step",
                                                      "bits / value", f"energy ({unit})"])
    for cut in cuts:
        table.add_row(cut["tensor"], cut["to"], cut["direction"], cut["kind"], f"{cut['values_per_step']:,}",
                      str(cut["bits_per_value"]), fmt_in(cut["energy_mj"], scale))
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


FORMS_TITLE = "residual stream relayed or unrolled (faithful; each form's folded graph on these inputs)"


def form_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the residual-form comparison (`measure.residual_form_energy`); no rows without one."""
    forms = report.get("residual_forms") or {}
    unit, scale = energy_unit(v for f in forms.values() for v in (f["total_energy_mj"], f["chip_mj"]))
    columns = ["form", f"total ({unit})", f"chip ({unit})", f"host↔chip ({unit})", f"host ({unit})",
               f"static ({unit})", "cores", "latency (ms)"]
    return columns, [[form + (" (kept)" if f["kept"] else ""), *(fmt_in(f[k], scale) for k in (
        "total_energy_mj", "chip_mj", "transfer_mj", "host_mj", "static_mj")), f"{f['cores']:,}",
        f"{f['latency_ms']:.3g}"] for form, f in forms.items()]


def forms_table(report: dict) -> Table:
    columns, rows = form_rows(report)
    table = _table(FORMS_TITLE, columns)
    for row in rows:
        table.add_row(*row)
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
    return [f"{name} ({c['basis']})" for name, c in tables if c["basis"] in NOT_MEASURED]


def print_report(report: dict, console: Console) -> None:
    console.print(headline(report), soft_wrap=True)
    console.print(totals_table(report))
    console.print(comparison_table(report))
    console.print(layer_table(report))
    if report["modes"]["faithful"]["cuts"]:
        console.print(cut_table(report))
    console.print(resource_table(report))
    if report.get("residual_forms"):
        console.print(forms_table(report))
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
    """Faithful energy per layer, split into MAC, AC, neuron-update and spike energy (stacked bars), host and chip
    layers in panels of their own, each on its own scale: the chip's µJ stay visible beside the host's mJ."""
    plt = _pyplot()
    panels = [(p, [r for r in report["modes"]["faithful"]["layers"] if r["energy_mj"] > 0 and r["placement"] == p])
              for p in ("host", "chip")]
    panels = [(p, rows) for p, rows in panels if rows]
    heights = [0.28 * len(rows) + 1.0 for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (placement, rows) in zip(axes[:, 0], panels):
        unit, scale = energy_unit(r["energy_mj"] for r in rows)
        left = [0.0] * len(rows)
        for op, colour in (("mac", "#d95f02"), ("ac", "#1b9e77"), ("neuron_update", "#7570b3"),
                           ("spike", "#e7298a")):
            widths = [r["energy_split_mj"][op] / scale for r in rows]
            ax.barh(range(len(rows)), widths, left=left, color=colour, label=op.replace("_", " "))
            left = [a + b for a, b in zip(left, widths)]
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"energy per sample ({unit})")
        ax.set_title(f"faithful energy per {placement} layer")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
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
    """The parts of the faithful total (`totals`) and the paper's total, on a log scale with their values written on
    the bars: a part a thousand times smaller than the GAC encoder still shows."""
    plt = _pyplot()
    parts = [(k, v) for k, v in totals(report) if v > 0]
    unit, scale = energy_unit(v for _, v in parts)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(parts) + 1.2))
    values = [v / scale for _, v in parts]
    ax.barh(range(len(parts)), values, color=[PART_COLOURS[k] for k, _ in parts])
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.3g} {unit}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(parts)), [k for k, _ in parts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"energy per sample ({unit}, log scale)")
    ax.set_title("where the energy goes")
    return _png(fig)


def _html_table(columns: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _layer_section(title: str, mode: dict) -> str:
    unit, scale = energy_unit(r["energy_mj"] for r in mode["layers"])
    columns = ["layer", "segment", "op", "row", "MACs", "ACs", "neuron updates", "spikes", f"energy ({unit})", "note"]
    return f"<h2>{html.escape(title)}</h2>" + _html_table(columns, [
        [r["name"], r["segment"] or r["placement"], r["op"], r["category"], fmt_count(r["macs"]), fmt_count(r["acs"]),
         fmt_count(r["neuron_updates"]), fmt_count(r["spikes"]), fmt_in(r["energy_mj"], scale), r["note"]]
        for r in mode["layers"]])


def render_html(report: dict) -> str:
    res = report["loihi2"]
    cuts = report["modes"]["faithful"]["cuts"]
    total_unit, total_scale = energy_unit(v for _, v in totals(report))
    row_unit, row_scale = energy_unit(v for r in report["comparison"] for v in (r["paper_mj"], r["faithful_mj"]))
    cut_unit, cut_scale = energy_unit(c["energy_mj"] for c in cuts)
    source = report.get("source_sha256")
    sections = [
        f"<h1>snn2hw energy report: {html.escape(report['arch'])}</h1>",
        f"<p>{html.escape(headline(report))}. Energies per sample (one inference), each table in the unit its "
        "header names (the JSON holds mJ).</p>",
        f"<p class=\"meta\">snn2hw {html.escape(report['snn2hw_version'])}, {html.escape(report['created'])}; "
        f"source {html.escape(report.get('origin', ''))}"
        + (f" (sha256 <code>{html.escape(source)}</code>)" if source else "") + "</p>",
        "<h2>Energy per sample</h2>",
        _html_table(["part", f"energy ({total_unit})"], [[k, fmt_in(v, total_scale)] for k, v in totals(report)]),
        _share_plot(report),
        "<h2>Paper vs faithful, row by row</h2>",
        _html_table(["row", f"paper ({row_unit})", f"faithful ({row_unit})", "why they differ"],
                    [[r["row"], fmt_in(r["paper_mj"], row_scale), fmt_in(r["faithful_mj"], row_scale), r["why"]]
                     for r in report["comparison"]]),
        "<h2>Per layer and per step</h2>", _layer_energy_plot(report), _firing_rate_plot(report),
        _layer_section("Faithful mode per layer (totals over T)", report["modes"]["faithful"]),
        "<h2>Host↔chip transfers</h2>",
        _html_table(["tensor", "to", "direction", "kind", "values / step", "bits / value", f"energy ({cut_unit})"],
                    [[c["tensor"], c["to"], c["direction"], c["kind"], c["values_per_step"], c["bits_per_value"],
                      fmt_in(c["energy_mj"], cut_scale)] for c in cuts]),
        _layer_section("Paper mode per layer", report["modes"]["paper"]),
        f"<h2>Loihi 2: {html.escape(resource_summary(res))}</h2>",
        _html_table(["layer", "neurons", "synapses", "stored weights", "conv kernel weights", "dense fan-in",
                     "max fan-in", "neurons / core", "cores", "bound by"],
                    [[r["layer"], r["neurons"], r["synapses"], r["weights"], r["conv_kernel_weights"],
                      r["dense_fan_in"], r["max_fan_in"], r["neurons_per_core"], r["cores"], r["limited_by"]]
                     for r in res["layers"]]),
        "".join(f'<p class="bad">limit exceeded: {html.escape(v["message"])}</p>' for v in res["violations"]),
        *([f"<h2>{html.escape(FORMS_TITLE)}</h2>", _html_table(*form_rows(report))]
          if report.get("residual_forms") else []),
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
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}.bad{color:#b00}"
             ".meta{color:#555;font-size:12px}")
    title = f"snn2hw energy: {html.escape(report['arch'])}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style></head>"
            f"<body>{''.join(sections)}</body></html>")


def write_html(report: dict, path: Path) -> None:
    write_text_atomic(path, render_html(report))
