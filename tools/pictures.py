"""The documents' pictures, drawn with matplotlib from the same JSON files as their tables.

Each picture is an SVG under results/pictures/, named after its function here. `python -m
zcl_tools.figures render` redraws them with the tables and `check` fails on a stale one, as it
does on a stale table. Drawing is deterministic so that the check can compare bytes: no date in
the metadata, a fixed salt for the ids matplotlib gives elements, and text kept as text rather
than glyph outlines. The same JSON and the same matplotlib (pinned in pyproject.toml) give the
same file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from zcl_tools.figures import Results

FOLDER = "pictures"  # inside the results folder
# Who is who, in every picture: the same colour for the same transport.
COLOURS = {
    "local spawn": "#7f7f7f",
    "SSH, new OpenSSH login": "#b2182b",
    "SSH, new asyncssh connection": "#ef8a62",
    "SSH, kept asyncssh connection": "#fddbc7",
    "ZeroMQ": "#2166ac",
    # the parallel shells (fleet_shell): ours in ZeroMQ's colour, the OpenSSH peers in reds
    "zcl-run": "#2166ac",
    "pdsh": "#b2182b",
    "clush": "#ef8a62",
    "ansible": "#7f7f7f",
}
STYLE = {
    "svg.hashsalt": "zmq-cluster-lab",  # stable element ids
    "svg.fonttype": "none",  # text as text: smaller, and the same bytes on every machine
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415 - only the tools need matplotlib

    return Figure(figsize=(width, height), layout="constrained")


def latency(r: Results) -> Figure:
    """One command's time, p50 to p99, by transport: on one machine and between containers."""
    here, docker = r["bench-03"]["latency"], r["bench-docker"]["latency"]
    rows = [
        ("local spawn", "this machine", here["local_spawn"]),
        ("SSH, new OpenSSH login", "this machine", here["ssh_fresh_openssh"]),
        ("SSH, new asyncssh connection", "this machine", here["ssh_fresh_asyncssh"]),
        ("SSH, kept asyncssh connection", "this machine", here["ssh_persistent_asyncssh"]),
        ("ZeroMQ", "this machine", here["zmq"]),
        ("SSH, new asyncssh connection", "containers", docker["ssh_fresh_asyncssh"]),
        ("SSH, kept asyncssh connection", "containers", docker["ssh_persistent_asyncssh"]),
        ("ZeroMQ", "containers", docker["zmq"]),
    ]
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    for y, (name, _, p) in enumerate(reversed(rows)):
        ax.plot([p["p50_ms"], p["p99_ms"]], [y, y], color=COLOURS[name], linewidth=4)
        ax.plot([p["p50_ms"]], [y], "o", color="black", markersize=4)
        ax.text(p["p99_ms"] * 1.08, y, f"{p['p50_ms']:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{n} ({w})" for n, w, _ in reversed(rows)])
    ax.set_xscale("log")
    ax.set_xlabel("ms for one `true` (log scale): the dot is p50, the bar runs to p99")
    ax.set_title("One command's latency by transport")
    return fig


def throughput(r: Results) -> Figure:
    """Commands per second with 32 in flight, SSH kept open against ZeroMQ, in both places."""
    places = {
        "this machine": r["bench-03"]["throughput"],
        "containers": r["bench-docker"]["throughput"],
    }
    fig = _figure(5.5, 2.6)
    ax = fig.add_subplot()
    labels, values, colours = [], [], []
    for where, figures in places.items():
        for key, name in (
            ("ssh_persistent_asyncssh", "SSH, kept asyncssh connection"),
            ("zmq", "ZeroMQ"),
        ):
            labels.append(f"{name}\n({where})")
            values.append(figures[key]["per_s"])  # type: ignore[literal-required]
            colours.append(COLOURS[name])
    bars = ax.barh(range(len(values)), values, color=colours, edgecolor="black", linewidth=0.5)
    ax.bar_label(bars, [f"{v:,.0f}/s" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("commands per second, 32 in flight")
    ax.set_title("Throughput")
    return fig


def high_water_marks(r: Results) -> Figure:
    """What each socket type does when its peer stops reading: accepted, then refused or dropped."""
    h = r["bench-01"]["08_high_water_marks"]
    kinds = ["PUSH", "DEALER", "ROUTER_MANDATORY", "PUB", "ROUTER"]
    accepted = [h["accepted"][k] for k in kinds]
    delivered = [h["delivered"].get(k, h["accepted"][k]) for k in kinds]
    fig = _figure(6, 2.8)
    ax = fig.add_subplot()
    ys = range(len(kinds))
    ax.barh(
        ys, accepted, color="#fddbc7", edgecolor="black", linewidth=0.5, label="send() accepted"
    )
    ax.barh(ys, delivered, color="#2166ac", label="delivered")
    for y, kind, took, got in zip(ys, kinds, accepted, delivered, strict=True):
        if kind in ("PUB", "ROUTER"):
            after = f"took all {took:,}, delivered {got:,}, dropped the rest"
            ax.text(got + h["flood"] * 0.02, y, after, va="center", fontsize=8, color="black")
        else:
            ax.text(took + h["flood"] * 0.02, y, f"{took} in, then EAGAIN", va="center", fontsize=8)
    ax.set_yticks(ys, kinds)
    ax.invert_yaxis()
    ax.set_xlim(0, h["flood"] * 1.02)
    ax.set_xlabel(
        f"messages (a flood of {h['flood']:,}; SNDHWM = RCVHWM = {h['hwm']}, {h['transport']})"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=2, fontsize=8, frameon=False)
    ax.set_title("At the high-water mark: refuse, or drop")
    return fig


def pipeline(r: Results) -> Figure:
    """The pipeline lesson's batch time for each worker count (the median of its repeats, the
    bar from the fastest to the slowest), against the ideal 1/N of one worker's."""
    p = r["bench-01"]["04_pipeline"]
    counts = sorted(int(n) for n in p["seconds"])
    seconds = [p["seconds"][str(n)] for n in counts]
    low = [max(0.0, s - p["spread"][str(n)][0]) for n, s in zip(counts, seconds, strict=True)]
    high = [max(0.0, p["spread"][str(n)][1] - s) for n, s in zip(counts, seconds, strict=True)]
    fig = _figure(4.5, 2.6)
    ax = fig.add_subplot()
    ax.errorbar(
        counts, seconds, yerr=[low, high], fmt="o-", color="#2166ac", capsize=3,
        label=f"measured (median of {p['repeats']}, fastest to slowest)",
    )  # fmt: skip
    ax.plot(counts, [seconds[0] / n for n in counts], "--", color="#7f7f7f", label="1/N of one")
    for n, s in zip(counts, seconds, strict=True):
        ax.annotate(
            f"{s:.2f} s ({seconds[0] / s:.1f}x)", (n, s), textcoords="offset points",
            xytext=(6, 4), fontsize=8,
        )  # fmt: skip
    ax.set_xticks(counts)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("workers")
    ax.set_ylabel("seconds for the batch")
    ax.set_title(f"{p['tasks']} tasks of {p['work_ms']} ms, shared by PUSH")
    ax.legend(fontsize=8, frameon=False)
    return fig


def detection(r: Results) -> Figure:
    """For each fault the Docker bench put on a node: how long until the coordinator declared it
    dead (from the fault), and until it was back (from the heal)."""
    d = r["bench-docker"]
    faults = list(d["detection"])
    fig = _figure(6, 2.4)
    ax = fig.add_subplot()
    for y, fault in enumerate(faults):
        times = d["detection"][fault]
        for offset, key, colour, label in (
            (-0.2, "detected_s", "#ef8a62", "fault until declared dead"),
            (0.2, "rejoined_s", "#92c5de", "heal until back"),
        ):
            value = times[key]  # type: ignore[literal-required]
            ax.barh(y + offset, value, height=0.38, color=colour, label=label if y == 0 else None)
            ax.text(value + 0.02, y + offset, f"{value:.2f} s", va="center", fontsize=8)
    ax.set_yticks(
        range(len(faults)), [f"{fault} {d['detection'][fault]['node']}" for fault in faults]
    )
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2, fontsize=8, frameon=False)
    ax.set_title("Failure detection between containers")
    return fig


def timeline(r: Results) -> Figure:
    """The Docker bench's faults and the coordinator's verdicts, one row per node, from the
    cluster's event log: shaded while a fault was in force, x when declared dead, o when back."""
    events = r["bench-docker"].get("timeline", [])
    nodes = sorted({e["node"] for e in events})
    colours = {"fail": "#b2182b", "pause": "#ef8a62", "partition": "#92c5de"}
    fig = _figure(7, 1 + 0.45 * max(len(nodes), 1))
    ax = fig.add_subplot()
    started: dict[tuple[str, str], float] = {}
    end = max((e["t"] for e in events), default=1.0)
    for e in events:
        y = nodes.index(e["node"])
        kind = e["event"].rsplit(".", 1)[-1]
        if e["event"].startswith("fault.start."):
            started[(e["node"], kind)] = e["t"]
        elif e["event"].startswith("fault.end."):
            begin = started.pop((e["node"], kind), e["t"])
            ax.barh(y, e["t"] - begin, left=begin, height=0.5, color=colours.get(kind, "#cccccc"))
            ax.text((begin + e["t"]) / 2, y + 0.38, kind, ha="center", fontsize=7)
        elif e["event"] == "worker.dead":
            ax.plot([e["t"]], [y], "x", color="black", markersize=7)
        elif e["event"] == "worker.joined":
            ax.plot([e["t"]], [y], "o", color="black", markersize=4, fillstyle="none")
    for (node, kind), begin in started.items():  # a fault still in force at the end
        y = nodes.index(node)
        ax.barh(y, end - begin, left=begin, height=0.5, color=colours.get(kind, "#cccccc"))
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(-0.6, len(nodes) - 0.2)
    ax.set_xlabel("seconds from the first fault: x declared dead, o back")
    ax.set_title("The Docker bench's faults and the coordinator's verdicts")
    return fig


def fanout(r: Results) -> Figure:
    """How one controller's fan-out grows with the number of nodes: cold (connections set up on
    the way) and warm (connections open), ZeroMQ against asyncssh, both axes logarithmic."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    d = r["bench-fanout"]
    sizes = d["sizes"]
    fig = _figure(7, 2.8)
    panels = (
        (
            "cold: every result, connections set up",
            "cold",
            "wall_s",
            "SSH, new asyncssh connection",
        ),
        (
            "warm: one gather over open connections, p50",
            "warm",
            "p50_s",
            "SSH, kept asyncssh connection",
        ),
    )
    for column, (title, phase, figure, ssh_name) in enumerate(panels):
        ax = fig.add_subplot(1, 2, column + 1)
        for side, name in (("ssh", ssh_name), ("zmq", "ZeroMQ")):
            seconds = [d["runs"][str(n)][side][phase][figure] for n in sizes]  # type: ignore[literal-required]
            # a dark edge: the kept connection's colour is pale on its own
            ax.plot(sizes, seconds, "o-", color=COLOURS[name], mec="#404040", lw=2, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # labels within a decade
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} s"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("nodes")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, frameon=False)
    return fig


def fleet_shell(r: Results) -> Figure:
    """A command on N nodes from an operator's shell: zcl-run against pdsh, clush and Ansible,
    each a whole process, cold; both axes logarithmic."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    d = r["bench-fleet-shell"]
    sizes = d["sizes"]
    fig = _figure(4.5, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    for tool in d["runs"][str(sizes[0])]:
        points = [(n, d["runs"][str(n)][tool]["median_s"]) for n in sizes]
        shown = [(n, s) for n, s in points if s > 0]  # a size a tool failed at is left out
        ax.plot([n for n, _ in shown], [s for _, s in shown], "o-", color=COLOURS[tool], lw=2,
                label=tool)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} s"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("nodes")
    ax.set_title(f"`{d['command']}` on every node, fan-out {d['fanout']}", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return fig


PICTURES: dict[str, Callable[[Results], Figure]] = {
    "latency": latency,
    "throughput": throughput,
    "high_water_marks": high_water_marks,
    "pipeline": pipeline,
    "detection": detection,
    "fanout": fanout,
    "fleet_shell": fleet_shell,
    "timeline": timeline,
}


def draw(name: str, results: Results) -> bytes:
    """The picture as SVG bytes, the same for the same JSON."""
    import matplotlib  # noqa: PLC0415

    with matplotlib.rc_context(STYLE):
        fig = PICTURES[name](results)
        out = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None, "Creator": None}
        fig.savefig(out, format="svg", metadata=metadata)
    return out.getvalue()
