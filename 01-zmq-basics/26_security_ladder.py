"""Lesson 26, the security ladder: grasslands, strawhouse, woodhouse, stonehouse, ironhouse, each
rung a server, a client that belongs and an intruder that does not.

zguide: none; it was written before ZeroMQ had security (libzmq 4.0). The rungs are the names
the CurveZMQ documents and pyzmq's examples/security use; the specs are rfc.zeromq.org
23/ZMTP (NULL and PLAIN), 26/CURVEZMQ and 27/ZAP.
Terms: NULL, PLAIN, CURVE, ZAP, allow list, grasslands, strawhouse, woodhouse, stonehouse,
ironhouse, ZAP_ENFORCE_DOMAIN.

What it shows
  * grasslands: no security mechanism at all (NULL): anyone who reaches the port is served,
    and everything crosses the wire in the clear.
  * strawhouse: still NULL, but a ZAP handler (lesson 16) looks at the peer's IP address and
    refuses those not on a list. Addresses can be spoofed or shared: a straw wall.
  * woodhouse: PLAIN, a user name and password, checked by the handler. The password crosses
    the wire in the clear, so anyone who can watch it can use it later.
  * stonehouse: CURVE. The connection is encrypted and the server proves who it is; the
    handler lets any client key in, so the intruder, given the server's public key, is served.
  * ironhouse: CURVE, and the handler lets in only the client keys it lists. Step 02's
    coordinator and step 03's agents live here (authorized_keys).
  * The intruder here connects from 127.0.0.2 (a source address in the endpoint,
    "tcp://127.0.0.2:0;127.0.0.1:PORT"), so that strawhouse has an address to refuse.
  * Without a ZAP handler, libzmq does not refuse for NULL and CURVE: it skips the check
    (unless ZAP_ENFORCE_DOMAIN is set), and those rungs let everyone in. PLAIN alone will
    not go on without a handler: woodhouse then refuses even the runner.

Picture (PATTERNS.md draws it: each arrow goes from the connecting socket to the binding one)
  runner DEALER -> server ROUTER: on each rung NULL, PLAIN or CURVE; served
  intruder DEALER -> server ROUTER: from 127.0.0.2, a guessed password, its own key
  server REQ* -> handler REP: ZAP: address, user and password, or key

Try it
  python 26_security_ladder.py demo      (each rung: who was served, who refused)

Experiments (each an edit to a copy of this file; the test suite makes each one and checks that
the demo ends as predicted)
  * `IRONHOUSE_KEYS = {"runner"}` -> `IRONHOUSE_KEYS = {"runner", "intruder"}`: PASS,
    "ironhouse: runner served, intruder served"
      The list decides: add the intruder's key and it is a runner like any other.
  * `threading.Thread(target=zap_handler, args=(ctx, keys), daemon=True).start()` -> `pass`:
    FAIL, "strawhouse: the intruder was served"
      No handler bound: libzmq asks nobody and refuses nobody (but PLAIN, which refuses all).
"""

from __future__ import annotations

import argparse
import sys
import threading

import zmq
from zmq.utils import z85

RUNGS = ["grasslands", "strawhouse", "woodhouse", "stonehouse", "ironhouse"]
ALLOWED_ADDRESSES = {"127.0.0.1"}  # strawhouse's list
PASSWORDS = {"runner": "correct horse"}  # woodhouse's
IRONHOUSE_KEYS = {"runner"}  # ironhouse's, by name
INTRUDER_FROM = "127.0.0.2"
WAIT_MS = 1500
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def allowed(
    domain: str, address: str, mechanism: bytes, credentials: list[bytes], keys: dict[bytes, str]
) -> bool:
    """The ZAP handler's policy, rung by rung (the domain names the rung)."""
    if domain == "strawhouse":
        return address in ALLOWED_ADDRESSES
    if domain == "woodhouse" and mechanism == b"PLAIN":
        user, password = (c.decode() for c in credentials)
        return PASSWORDS.get(user) == password
    if domain == "stonehouse" and mechanism == b"CURVE":
        return True  # any client key: the connection is encrypted, nobody is chosen
    if domain == "ironhouse" and mechanism == b"CURVE":
        return keys.get(credentials[0]) in IRONHOUSE_KEYS
    return False


def zap_handler(ctx: zmq.Context[zmq.Socket[bytes]], keys: dict[bytes, str]) -> None:
    with ctx.socket(zmq.REP) as zap:
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)
        while True:
            try:
                version, request_id, domain, address, _identity, mechanism, *credentials = (
                    zap.recv_multipart()
                )
            except zmq.ContextTerminated:
                return
            ok = allowed(domain.decode(), address.decode(), mechanism, credentials, keys)
            status = [b"200", b"OK"] if ok else [b"400", b"refused"]
            zap.send_multipart([version, request_id, *status, b"", b""])


def server_socket(
    ctx: zmq.Context[zmq.Socket[bytes]], rung: str, server_secret: bytes
) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    if rung != "grasslands":
        sock.zap_domain = rung.encode()  # ask the handler, naming the rung
    if rung == "woodhouse":
        sock.plain_server = True
    if rung in ("stonehouse", "ironhouse"):
        sock.curve_server = True
        sock.curve_secretkey = server_secret
    sock.bind("tcp://127.0.0.1:*")
    return sock


def ask(rung: str, port: str, who: str, server_public: bytes, pair: tuple[bytes, bytes]) -> bool:
    """Whether `who` was answered (in a context of its own, as a separate program would be)."""
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as client:
        client.linger = 0  # a hello never delivered must not hold the context at its end
        if rung == "woodhouse":
            client.plain_username = who.encode()
            client.plain_password = b"guessed" if who == "intruder" else PASSWORDS[who].encode()
        if rung in ("stonehouse", "ironhouse"):
            client.curve_serverkey = server_public  # the intruder too: public keys are public
            client.curve_publickey, client.curve_secretkey = pair
        source = f"{INTRUDER_FROM}:0;" if who == "intruder" else ""
        client.connect(f"tcp://{source}127.0.0.1:{port}")
        try:
            client.send(b"hello", zmq.NOBLOCK)  # queued until the handshake ends, if it does
        except zmq.Again:
            return False
        return bool(client.poll(WAIT_MS))


def serve(sock: zmq.Socket[bytes], stop: threading.Event) -> None:
    while not stop.is_set():
        if sock.poll(50):
            identity, _body = sock.recv_multipart()
            sock.send_multipart([identity, b"hello yourself"])


def demo() -> int:
    server_public, server_secret = zmq.curve_keypair()
    pairs = {who: zmq.curve_keypair() for who in ("runner", "intruder")}
    keys = {z85.decode(public): who for who, (public, _) in pairs.items()}
    ctx = zmq.Context()
    threading.Thread(target=zap_handler, args=(ctx, keys), daemon=True).start()
    results: dict[str, dict[str, bool]] = {}
    for rung in RUNGS:
        sock = server_socket(ctx, rung, server_secret)
        port = sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1]
        stop = threading.Event()
        serving = threading.Thread(target=serve, args=(sock, stop))
        serving.start()  # the socket is that thread's from here on
        results[rung] = {who: ask(rung, port, who, server_public, pairs[who]) for who in pairs}
        stop.set()
        serving.join()
        sock.close()
    ctx.term()
    expected = {
        "grasslands": True,
        "strawhouse": INTRUDER_FROM in ALLOWED_ADDRESSES,
        "woodhouse": False,  # it does not know the password
        "stonehouse": True,
        "ironhouse": "intruder" in IRONHOUSE_KEYS,
    }
    problems = []
    for rung, served in results.items():
        said = ", ".join(f"{who} {'served' if ok else 'refused'}" for who, ok in served.items())
        print(f"{rung}: {said}")
        if not served["runner"]:
            problems.append(f"{rung}: the runner was refused")
        if served["intruder"] != expected[rung]:
            problems.append(
                f"{rung}: the intruder was {'served' if served['intruder'] else 'refused'}"
            )
    if problems:
        print("FAIL 26_security_ladder: " + "; ".join(problems))
        return 1
    print(
        "PASS 26_security_ladder: the runner served on every rung; the intruder served where "
        "the rung lets anyone in (grasslands, stonehouse) and refused where it chooses"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("demo")
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
