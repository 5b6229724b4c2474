"""Lesson 20, Freelance: no broker at all, clients that fail over between servers themselves, in
the zguide's three models.

zguide: chapter 4, "Brokerless Reliability (Freelance Pattern)", models one, two and three.
Terms: Freelance, brokerless, fail-over, shotgun (send to all, keep the first answer),
ROUTER-to-ROUTER, PING/PONG, sequence number.

What it shows
  * Without a broker there is nothing to fail, but every client must know the servers and
    find a live one itself. Three servers here, the first KILLED of them dead before the
    clients ask (model three's PINGs find them alive; they die just after), and one client
    of each model asking REQUESTS questions:
  * Model one, simple retry: a REQ tries the servers in the order it knows them, with a
    timeout each. It forgets between requests, so every request pays a timeout for each
    dead server before it.
  * Model two, the shotgun: one DEALER connected to every server sends each request once
    per server and keeps the first reply with the right sequence number. No timeouts at
    all while one server lives, for the price of answering every request several times.
    (IMMEDIATE=1, lesson 03: copies go only to finished connections, not to a dead one.)
  * Model three, the careful one: a ROUTER client that addresses each server by name (the
    server binds with its endpoint as its routing id), asks each "PING" to learn which are
    alive, sends a request to one live server only, and on a timeout marks that one dead
    and tries the next. A dead server costs one timeout in all, not one per request.
  * Model three is what a cluster client wants; it is also most of a broker's work moved
    into every client, which is why step 02 has a coordinator.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  one REQ -> server ROUTER: model one: each server in turn
  two DEALER -> server ROUTER: model two: [seq, body] to all, first answer wins
  three ROUTER -> server ROUTER: model three: [server id, seq, body], PING and PONG

Try it
  python 20_freelance.py server tcp://127.0.0.1:5701     (and 5702, 5703)
  python 20_freelance.py demo    (each model's answers and timeouts, the first server dead)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `SERVERS, KILLED = 3, 1` -> `SERVERS, KILLED = 3, 2`: PASS,
    "model three gave up 2 times in all"
      Two dead servers: model one gives up on two servers per request, model three on two
      in all (by a timeout, or at once when its ROUTER already knows the connection is gone).
  * `SERVERS, KILLED = 3, 1` -> `SERVERS, KILLED = 3, 3`: FAIL, "no live server"
      With every server dead no model can answer; each says so after its timeouts.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, Queue

import zmq
from zmq.utils.monitor import recv_monitor_message

SERVERS, KILLED = 3, 1  # servers started, and how many of the first are dead for the clients
REQUESTS = 5
TIMEOUT_MS = 300  # how long a client waits for one server
Context = zmq.Context[zmq.Socket[bytes]]


def server(endpoint: str) -> None:
    """Answer PING with PONG and anything else with itself, to whoever asked (ROUTER)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.routing_id = endpoint.encode()  # model three's clients address us by our endpoint
    sock.bind(endpoint)
    print(f"server: {endpoint}", flush=True)
    while True:
        client, *envelope, body = sock.recv_multipart()  # envelope: b"" from REQ, seq others
        sock.send_multipart([client, *envelope, b"PONG" if body == b"PING" else body])


@dataclass
class Outcome:
    answered: int = 0
    gave_up: int = 0  # times a server was given up on: a timeout, or no connection to it
    copies: int = 0  # requests sent, all copies counted


def model_one(ctx: Context, servers: list[str]) -> Outcome:
    """Each request: the servers in order, a fresh REQ and TIMEOUT_MS each."""
    outcome = Outcome()
    for n in range(REQUESTS):
        for endpoint in servers:
            with ctx.socket(zmq.REQ) as req:
                req.connect(endpoint)
                req.send(b"request %d" % n)
                outcome.copies += 1
                if req.poll(TIMEOUT_MS):
                    req.recv()
                    outcome.answered += 1
                    break
                outcome.gave_up += 1
    return outcome


def model_two(ctx: Context, servers: list[str]) -> Outcome:
    """Every request to every live server at once; the first reply with its number wins."""
    outcome = Outcome()
    with ctx.socket(zmq.DEALER) as dealer:
        dealer.immediate = True  # only finished connections take copies
        handshakes = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for endpoint in servers:
            dealer.connect(endpoint)
        live = sum(
            1 for _ in servers if handshakes.poll(TIMEOUT_MS) and recv_monitor_message(handshakes)
        )
        dealer.disable_monitor()
        handshakes.close()
        for n in range(REQUESTS):
            seq = b"%d" % n
            for _ in range(live):  # DEALER deals one copy to each connection in turn
                dealer.send_multipart([seq, b"request %d" % n])
                outcome.copies += 1
            while dealer.poll(TIMEOUT_MS):
                if dealer.recv_multipart()[0] == seq:  # later copies' replies are dropped
                    outcome.answered += 1
                    break
            else:
                outcome.gave_up += 1
    return outcome


def model_three(ctx: Context, servers: list[str], after_ping: Callable[[], None]) -> Outcome:
    """A ROUTER that learns which servers live, uses one, and moves on only when it must.
    `after_ping` runs between the PINGs and the first request (the demo kills servers)."""
    outcome = Outcome()
    with ctx.socket(zmq.ROUTER) as router:
        router.router_mandatory = True  # a server with no connection: an error, not a drop
        for endpoint in servers:
            router.connect(endpoint)
        alive = ping_all(router, servers)
        after_ping()
        for n in range(REQUESTS):
            while alive:
                try:
                    router.send_multipart([alive[0].encode(), b"%d" % n, b"request %d" % n])
                    outcome.copies += 1
                    if router.poll(TIMEOUT_MS):
                        router.recv_multipart()
                        outcome.answered += 1
                        break
                except zmq.ZMQError:  # EHOSTUNREACH: its connection is gone already
                    pass
                outcome.gave_up += 1
                alive.pop(0)  # dead, until a PING says otherwise
    return outcome


def ping_all(router: zmq.Socket[bytes], servers: list[str]) -> list[str]:
    """Ask every server PING; return them in the given order. Each connection is in hand
    once ROUTER_MANDATORY stops refusing; a server whose connection never comes is left out,
    and one that fell silent after connecting stays in until a request times out on it."""
    alive = []
    for endpoint in servers:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            try:
                router.send_multipart([endpoint.encode(), b"ping", b"PING"])
            except zmq.ZMQError:  # EHOSTUNREACH: no connection to it (yet)
                router.poll(10)  # the connection may still be coming: look again shortly
                continue
            if router.poll(TIMEOUT_MS) and router.recv_multipart()[-1] == b"PONG":
                alive.append(endpoint)
            break
    return alive


def free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def pass_lines(process: subprocess.Popen[str], into: Queue[str]) -> None:
    for line in process.stdout or ():
        into.put(line)


def start_servers(servers: list[str]) -> list[subprocess.Popen[str]]:
    """Every server, each having said it is bound (read with a deadline, on a thread)."""
    said: Queue[str] = Queue()
    processes = []
    for endpoint in servers:
        process = subprocess.Popen(
            [sys.executable, __file__, "server", endpoint], stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=pass_lines, args=(process, said), daemon=True).start()
        processes.append(process)
    for _ in servers:
        said.get(timeout=5)  # raises Empty if a server never came up
    return processes


def demo() -> int:
    servers = [free_endpoint() for _ in range(SERVERS)]
    try:
        processes = start_servers(servers)
    except Empty:
        print("FAIL 20_freelance: the servers did not start within 5 s")
        return 1

    def kill_the_first() -> None:  # after model three's PINGs found them all alive
        for process in processes[:KILLED]:
            process.kill()
            process.wait()

    ctx = zmq.Context()
    ctx.linger = 0
    try:
        outcomes = {"three": model_three(ctx, servers, kill_the_first)}
        outcomes["one"] = model_one(ctx, servers)
        outcomes["two"] = model_two(ctx, servers)
    finally:
        ctx.term()
        for process in processes:
            process.kill()
            process.wait()
    for name in ("one", "two", "three"):
        o = outcomes[name]
        print(f"model {name:5}: {o.answered} of {REQUESTS} answered, gave up on a server "
              f"{o.gave_up} times, {o.copies} requests sent")  # fmt: skip
    live = SERVERS - KILLED
    expected_gave_up = {  # from the constants: what each model must pay for the dead
        "one": REQUESTS * KILLED if live else REQUESTS * SERVERS,
        "two": 0 if live else REQUESTS,
        "three": KILLED,
    }
    problems = [] if live else ["no live server: nothing could be answered"]
    problems += [
        f"model {name}: {o.answered} answered, gave up {o.gave_up} times "
        f"(expected {expected_gave_up[name]})"
        for name, o in outcomes.items()
        if o.answered != (REQUESTS if live else 0) or o.gave_up != expected_gave_up[name]
    ]
    if problems:
        print("FAIL 20_freelance: " + "; ".join(problems))
        return 1
    print(
        f"PASS 20_freelance: every model answered {REQUESTS} of {REQUESTS}; model one gave up "
        f"on a dead server {outcomes['one'].gave_up} times, model two never (it sent "
        f"{outcomes['two'].copies} copies), model three gave up {KILLED} times in all"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("server").add_argument("endpoint")
    roles.add_parser("demo")
    args = parser.parse_args()
    try:
        if args.role == "server":
            server(args.endpoint)
            return 0
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
