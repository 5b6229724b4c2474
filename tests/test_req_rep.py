"""req_rep: EFSM is shown, and the Lazy Pirate client gets every answer across a server kill."""

from __future__ import annotations

import zmq

from zmq_basics import lesson, req_rep


def test_demo_survives_a_killed_server() -> None:
    result = req_rep.demo(requests=6, kill_before=2)
    assert "EFSM" in result.efsm
    assert result.answered == result.requests == 6
    assert result.retries >= 1  # the kill really cost a timeout


def test_client_gives_up_with_a_clear_error_when_nobody_answers() -> None:
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as silent:
        silent.linger = 0
        where = lesson.bind(silent, lesson.ANY_LOCAL_PORT)  # accepts requests, never replies
        retries_seen: list[int] = []
        client = req_rep.LazyPirateClient(ctx, where, on_retry=retries_seen.append)
        try:
            client.request(b"anyone?")
        except lesson.LessonError as exc:
            assert f"after {req_rep.ATTEMPTS} attempts" in str(exc)
        else:
            raise AssertionError("a server that never answers must not look like a success")
        finally:
            client.close()
        assert retries_seen == list(range(1, req_rep.ATTEMPTS + 1))
