"""Lesson 16, CURVE and ZAP: encrypted connections, and a handler that decides which keys may
connect.

zguide: none; it was written before ZeroMQ had security (libzmq 4.0). The specs are
rfc.zeromq.org 26/CURVEZMQ and 27/ZAP, and pyzmq's examples/security climbs the same ladder
(grasslands to ironhouse).
Terms: CURVE, key pair (public, secret), Z85, curve_server, curve_serverkey, ZAP, ZAP handler,
domain, user id, handshake failure.

What it shows
  * CURVE encrypts a connection and proves each end holds its secret key. Every key pair is
    made with zmq.curve_keypair(); keys travel as 40 characters of Z85 text.
  * The server sets curve_server and its secret key; a client sets the server's public key
    (which it must know beforehand: that is what stops a man in the middle) and a key pair
    of its own. A client that names the wrong server key cannot finish the handshake.
  * CURVE alone lets any client key in. ZAP (RFC 27) is how a server chooses: ZeroMQ asks
    whoever has bound a REP socket at inproc://zeromq.zap.01, in the server's context, about
    every handshake: version, request id, domain, address, routing id, mechanism, and for
    CURVE the client's public key (its 32 raw bytes, not the Z85 text). The answer "200"
    lets it in, "400" refuses, and the user id it gives rides on every message from that peer
    ("User-Id" metadata). With a ZAP domain set, even a plain (NULL) connection is asked about.
  * A refused client sees nothing but a handshake that failed (its monitor says which), and
    nothing it sends is ever delivered.
  * Step 02 asks for exactly these: the coordinator's key pair (`curve_server`), each
    runner's and node's key pair, and an authorized_keys file that its ZAP handler reads,
    whose entries also carry roles (what a key may do, not only whether it may connect).

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  client DEALER -> server ROUTER: the CURVE handshake, then "hello" with the User-Id
  server REQ* -> handler REP: ZAP: version, id, domain, address, mechanism, key; 200 or 400

Try it
  python 16_curve_zap.py demo   (four clients: allowed, not allowed, wrong server key, no CURVE)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `ALLOWED = {"alice"}` -> `ALLOWED = {"alice", "mallory"}`: PASS, "mallory: served"
      The handler decides: with mallory's key on the list, mallory gets in too.
  * `ALLOWED = {"alice"}` -> `ALLOWED = set()`: PASS, "alice: refused by ZAP"
      An empty list refuses every key, even a well-formed one; the verdict follows the list.
  * `server.curve_server = True` -> `server.curve_server = False`: FAIL, "alice was refused"
      A server that does not speak CURVE cannot talk to CURVE clients. The plain client is
      still kept out, but only because the ZAP handler refuses the NULL mechanism: without
      the handler it would be served in the clear. curve_server is the setting that must
      never be left out.
"""

from __future__ import annotations

import argparse
import sys
import threading

import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

ALLOWED = {"alice"}  # the keys the ZAP handler lets in, by name
WAIT_MS = 2000
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27
ready = threading.Event()  # the handler is bound: handshakes from now on are asked about


def zap_handler(
    ctx: zmq.Context[zmq.Socket[bytes]], keys: dict[bytes, str], log: list[str]
) -> None:
    """Answer ZeroMQ's questions about each handshake until the context ends."""
    with ctx.socket(zmq.REP) as zap:
        zap.bind(ZAP_ENDPOINT)
        ready.set()
        while True:
            try:
                version, request_id, domain, _address, _routing_id, mechanism, *credentials = (
                    zap.recv_multipart()
                )
            except zmq.ContextTerminated:
                return
            name = keys.get(credentials[0], "an unknown key") if credentials else "nobody"
            allowed = mechanism == b"CURVE" and name in ALLOWED
            log.append(f"ZAP: {mechanism.decode()} {name} for domain {domain.decode()!r}")
            status = [b"200", b"OK"] if allowed else [b"400", b"not on the list"]
            zap.send_multipart(
                [version, request_id, *status, name.encode() if allowed else b"", b""]
            )


def try_client(
    server_public: bytes, endpoint: str, keys: tuple[bytes, bytes] | None
) -> tuple[str, str]:
    """One client in a context of its own: (what its monitor saw, what the server answered)."""
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as client:
        ctx.linger = 0
        if keys is not None:
            client.curve_serverkey = server_public  # known beforehand: this is the trust
            client.curve_publickey, client.curve_secretkey = keys
        monitor = client.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        client.connect(endpoint)
        seen = "no handshake event"
        if monitor.poll(WAIT_MS):
            seen = zmq.Event(recv_monitor_message(monitor)["event"]).name or "?"
        if seen == "HANDSHAKE_SUCCEEDED":
            client.send(b"hello", zmq.NOBLOCK)
        answer = client.recv().decode() if client.poll(WAIT_MS) else "(nothing)"
        client.disable_monitor()
        monitor.close()
    return seen, answer


def serve(server: zmq.Socket[bytes], stop: threading.Event) -> None:
    """Answer every message with the user id ZAP gave its sender."""
    while not stop.is_set():
        if server.poll(100):
            identity, body = server.recv_multipart(copy=False)
            user = body.get("User-Id")
            server.send_multipart(
                [identity.bytes, f"hello {user}, you said {body.bytes!r}".encode()]
            )


def demo() -> int:
    server_public, server_secret = zmq.curve_keypair()
    pairs = {name: zmq.curve_keypair() for name in ("alice", "mallory")}
    impostor_server, _ = zmq.curve_keypair()  # a server key that is not the server's
    ctx = zmq.Context()
    ctx.linger = 0
    log: list[str] = []
    # ZAP hands over the client's key as its 32 raw bytes, not the Z85 text we hold
    names = {z85.decode(public): name for name, (public, _) in pairs.items()}
    threading.Thread(target=zap_handler, args=(ctx, names, log), daemon=True).start()
    ready.wait(WAIT_MS / 1000)
    server = ctx.socket(zmq.ROUTER)
    server.curve_server = True
    server.curve_secretkey = server_secret
    server.zap_domain = b"lesson16"
    server.bind("tcp://127.0.0.1:*")
    endpoint = server.getsockopt_string(zmq.LAST_ENDPOINT)
    stop = threading.Event()
    serving = threading.Thread(target=serve, args=(server, stop))
    serving.start()  # the server socket is used by that thread alone from here on
    outcomes = {
        "alice": try_client(server_public, endpoint, pairs["alice"]),
        "mallory": try_client(server_public, endpoint, pairs["mallory"]),
        "a client with the wrong server key": try_client(impostor_server, endpoint, pairs["alice"]),
        "the client without CURVE": try_client(server_public, endpoint, None),
    }
    stop.set()
    serving.join()
    server.close()
    ctx.term()  # ends the ZAP handler's recv
    for line in log:
        print(line)
    problems = []
    for who, (seen, answer) in outcomes.items():
        served = answer.startswith("hello")
        verdict = "served" if served else "refused by ZAP" if "AUTH" in seen else "refused"
        print(f"{who}: {verdict} ({seen}; answer {answer})")
        should = who in ALLOWED  # only a listed key, with the right server key, gets in
        if served != should:
            problems.append(f"{who} was {'served' if served else 'refused'}")
    if problems:
        print("FAIL 16_curve_zap: " + "; ".join(problems))
        return 1
    print(
        f"PASS 16_curve_zap: only {', '.join(sorted(ALLOWED)) or 'no key'} served; "
        "a key off the list, a wrong server key and a plain client refused"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo", help="a CURVE server with a ZAP handler, and four clients")
    parser.parse_args()
    if not zmq.has("curve"):
        parser.exit(1, f"{parser.prog}: error: this libzmq was built without CURVE\n")
    try:
        return demo()
    except zmq.ZMQError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
