"""Lesson 17, ZMTP heartbeats against application heartbeats: which one finds a frozen process,
and which one a stuck program.

zguide: chapter 4, "Heartbeating" (written before libzmq 4.2 added ZMTP's own); the options are
in zmq_setsockopt(3), ZMQ_HEARTBEAT_IVL, ZMQ_HEARTBEAT_TIMEOUT and ZMQ_HEARTBEAT_TTL, and the
PING and PONG commands in rfc.zeromq.org 37/ZMTP.
Terms: ZMTP heartbeat, PING, PONG, HEARTBEAT_IVL, HEARTBEAT_TIMEOUT, HEARTBEAT_TTL, application
heartbeat, liveness, TCP keepalive.

What it shows
  * Since libzmq 4.2 a socket can heartbeat by itself: every HEARTBEAT_IVL it sends a PING on
    each connection, and a connection that has said nothing for HEARTBEAT_TIMEOUT after it is
    closed, exactly as if the TCP connection had broken (the monitor says DISCONNECTED).
    HEARTBEAT_TTL asks the other side to do the same. No message of yours is involved.
  * PINGs are answered by libzmq's I/O thread, not by your code. So ZMTP heartbeats find a
    dead connection: a killed host, a cut cable, a process frozen whole (SIGSTOP stops every
    thread). They cannot find a live process whose program is stuck: its I/O thread answers
    every PING while its main loop sleeps, deadlocks or computes for an hour.
  * Application heartbeats (lesson 12, step 02) are messages your loop sends: they stop when
    the program stops, whatever the connection does. They find both, at the cost of code.
  * TCP keepalive (TCP_KEEPALIVE and its IDLE, INTVL, CNT) is the kernel's probe: it finds
    a dead host or a cut cable, but a frozen process's kernel answers for it, so like ZMTP
    on a stuck loop it sees nothing wrong (the demo's fourth case). Its defaults take hours.
  * Step 02's coordinator uses both: ZMTP heartbeats to drop dead connections fast, and the
    Majordomo heartbeats, whose rhythm it learns, to tell a stuck worker from a busy one.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  peer DEALER -> watcher ROUTER: "beat" from the loop; ZMTP PING and PONG beneath

Try it
  python 17_zmtp_heartbeats.py demo   (a peer frozen with and without ZMTP heartbeats, then a
                                       peer whose loop is stuck while its I/O thread lives)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `HEARTBEAT_IVL_MS = 100` -> `HEARTBEAT_IVL_MS = 0`: FAIL,
    "ZMTP heartbeats on: the frozen peer's connection was never dropped"
      An interval of 0 turns ZMTP heartbeats off: the frozen peer's TCP connection stays up,
      and only the application heartbeat notices.
  * `BEAT_S, LIVENESS = 0.1, 3` -> `BEAT_S, LIVENESS = 0.1, 50`: FAIL,
    "the stuck peer was never called dead"
      Fifty silent beats take longer than the demo waits: a liveness too generous is as
      blind as none.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

HEARTBEAT_IVL_MS = 100  # a ZMTP PING this often on each connection
HEARTBEAT_TIMEOUT_MS = 300  # silent this long after a PING: the connection is closed
BEAT_S, LIVENESS = 0.1, 3  # the application's own heartbeat, and beats missed before "dead"
WATCH_S = 2.0  # how long the demo watches for each verdict
STUCK = b"get stuck"  # what the demo sends a peer to make its main loop hang


def peer(endpoint: str) -> None:
    """Beat every BEAT_S from the main loop; on STUCK, stop looping (the I/O thread lives on)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    while True:
        sock.send(b"beat")
        if sock.poll(int(BEAT_S * 1000)) and sock.recv() == STUCK:
            time.sleep(3600)  # a deadlock, a long computation: the loop no longer runs


class Watch:
    """The server side: one ROUTER, its monitor, and when each verdict came."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], watch: str) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        if watch == "zmtp":
            self.sock.heartbeat_ivl = HEARTBEAT_IVL_MS
            self.sock.heartbeat_timeout = HEARTBEAT_TIMEOUT_MS
        elif watch == "keepalive":  # the kernel's probes, as short as they go: 1 s idle, 1 probe
            self.sock.tcp_keepalive = 1
            self.sock.tcp_keepalive_idle = self.sock.tcp_keepalive_intvl = 1
            self.sock.tcp_keepalive_cnt = 1
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def first_beat(self) -> bytes:
        if not self.sock.poll(int(WATCH_S * 1000)):
            raise TimeoutError(f"the peer did not beat within {WATCH_S:g} s")
        return self.sock.recv_multipart()[0]

    def verdicts(self, watch_s: float) -> tuple[float | None, float | None]:
        """Watch for `watch_s`: (seconds until the connection was dropped, seconds until the
        application heartbeat called the peer dead); None for what never happened."""
        started = last_beat = time.monotonic()
        dropped = dead = None
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while (now := time.monotonic()) - started < watch_s and (dropped is None or dead is None):
            ready = dict(poller.poll(int(BEAT_S * 1000 / 2)))
            if self.sock in ready:
                self.sock.recv_multipart()
                last_beat = time.monotonic()
            if self.monitor in ready and dropped is None:
                recv_monitor_message(self.monitor)
                dropped = time.monotonic() - started
            if dead is None and now - last_beat > BEAT_S * LIVENESS:
                dead = now - started
        return dropped, dead

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close()
        self.sock.close()


def case(
    ctx: zmq.Context[zmq.Socket[bytes]], watch_by: str, fault: str
) -> tuple[float | None, float | None]:
    """Start a peer, break it (`frozen`: SIGSTOP; `stuck`: its loop hangs), watch."""
    watch = Watch(ctx, watch_by)
    process = subprocess.Popen([sys.executable, __file__, "peer", watch.endpoint])
    try:
        identity = watch.first_beat()
        if fault == "frozen":
            process.send_signal(signal.SIGSTOP)
        else:
            watch.sock.send_multipart([identity, STUCK])
        # TCP keepalive needs 2 s (1 s idle, one probe a second later) to decide: watch longer
        return watch.verdicts(WATCH_S + (2 if watch_by == "keepalive" else 0))
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()
        watch.close()


def said(seconds: float | None) -> str:
    return "never" if seconds is None else f"after {seconds:.2f} s"


def demo() -> int:
    ctx = zmq.Context()
    cases = {
        "frozen peer, no ZMTP heartbeats": ("nothing", "frozen"),
        "frozen peer, ZMTP heartbeats on": ("zmtp", "frozen"),
        "stuck loop, ZMTP heartbeats on": ("zmtp", "stuck"),
        "frozen peer, TCP keepalive on": ("keepalive", "frozen"),
    }
    try:
        seen = {name: case(ctx, zmtp, fault) for name, (zmtp, fault) in cases.items()}
    except TimeoutError as exc:
        print(f"FAIL 17_zmtp_heartbeats: {exc}")
        return 1
    finally:
        ctx.term()
    for name, (dropped, dead) in seen.items():
        print(f"{name:34} connection dropped {said(dropped):13} peer called dead {said(dead)}")
    problems = []
    for name, (dropped, dead) in seen.items():
        watch_by, fault = cases[name]
        zmtp = watch_by == "zmtp"
        if dead is None:  # the application heartbeat must find every fault
            problems.append(f"{name}: the {fault} peer was never called dead")
        if fault == "frozen" and zmtp and dropped is None:
            off = " (HEARTBEAT_IVL=0 turns them off)" if HEARTBEAT_IVL_MS == 0 else ""
            problems.append(f"{name}: the frozen peer's connection was never dropped{off}")
        if not (fault == "frozen" and zmtp) and dropped is not None:
            problems.append(f"{name}: the connection was dropped, which nothing here can see")
    if problems:
        print("FAIL 17_zmtp_heartbeats: " + "; ".join(problems))
        return 1
    print(
        "PASS 17_zmtp_heartbeats: ZMTP heartbeats dropped the frozen peer's connection, and "
        "only the application heartbeat saw the stuck loop; TCP keepalive, answered by the "
        "frozen peer's kernel, saw nothing"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("peer", help="beat to ENDPOINT until told to get stuck").add_argument(
        "endpoint"
    )
    roles.add_parser("demo", help="three faults, two kinds of heartbeat")
    args = parser.parse_args()
    try:
        if args.role == "peer":
            peer(args.endpoint)
            return 0
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
