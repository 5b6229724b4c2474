"""What a node is made of, read by one shell script that both transports run.

The SSH executor has nothing on the node but a shell, so the system configuration is read by a
shell script; the node agent runs the very same script, so both transports report the same
figures for the same node (the journals of an SSH run and a ZeroMQ run must match).
"""

from __future__ import annotations

from zcl.errors import ProbeError
from zcl.protocols import SystemConfig

MARK = "@@"  # section headers in the probe's output: "@@hostname", "@@cpus", ...

PROBE_SCRIPT = f"""\
echo {MARK}hostname; hostname
echo {MARK}cpus; getconf _NPROCESSORS_ONLN
echo {MARK}memory_kb; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo
echo {MARK}nics; ls /sys/class/net 2>/dev/null
echo {MARK}numa; ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null
echo {MARK}gpus; nvidia-smi -L 2>/dev/null || true
"""


def parse_probe(output: str) -> SystemConfig:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK) :], [])
        elif current is not None and line.strip():
            current.append(line.strip())
    try:
        return SystemConfig(
            hostname=sections["hostname"][0],
            cpus=int(sections["cpus"][0]),
            memory_bytes=int(sections["memory_kb"][0]) * 1024,
            gpus=tuple(sections.get("gpus", [])),
            nics=tuple(sorted(n for n in sections.get("nics", []) if n != "lo")),
            numa_nodes=max(1, len(sections.get("numa", []))),
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ProbeError(f"unexpected system probe output ({exc!r}): {output[:200]!r}") from None
