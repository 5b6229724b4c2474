"""keys.py: the ~/.ssh-like layout, trust both ways, rotation, and its command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from zcl import curve, keys


def test_generate_lays_out_keys_and_trust_both_ways(tmp_path: Path) -> None:
    keys.generate(tmp_path, nodes=["node1", "node2"], controllers=["runner"])
    runner = keys.load_controller_keys(keys.controller_dir(tmp_path, "runner"))
    for node in ("node1", "node2"):
        agent = keys.load_agent_keys(keys.node_dir(tmp_path, node))
        assert runner.agent_key(node) == agent.public
        assert keys.read_authorized_keys(agent.authorized_keys) == {runner.public: "runner"}
        secret = keys.node_dir(tmp_path, node) / "host.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert (
        stat.S_IMODE((keys.controller_dir(tmp_path, "runner") / "id.key_secret").stat().st_mode)
        == 0o600
    )


def test_rotation_adds_a_key_everywhere_then_revokes_the_old_one(tmp_path: Path) -> None:
    keys.generate(tmp_path, nodes=["node1"], controllers=["old"])
    new_key = keys.add_controller(tmp_path, "new")
    authorized = keys.node_dir(tmp_path, "node1") / "authorized_keys"
    assert set(keys.read_authorized_keys(authorized).values()) == {"old", "new"}
    assert keys.revoke_controller(tmp_path, "old") == 1
    assert keys.read_authorized_keys(authorized) == {new_key: "new"}
    assert keys.load_controller_keys(keys.controller_dir(tmp_path, "new")).agent_key("node1")


def test_revoking_replaces_authorized_keys_whole_never_in_place(tmp_path: Path) -> None:
    """An agent reads authorized_keys on every change; a file truncated and rewritten in place
    could be read empty, and an empty file revokes every controller's sessions."""
    keys.generate(tmp_path, nodes=["node1"], controllers=["old", "new"])
    authorized = keys.node_dir(tmp_path, "node1") / "authorized_keys"
    authorized.chmod(0o640)
    with authorized.open() as held:  # what an agent reading at that moment would have open
        assert keys.revoke_controller(tmp_path, "old") == 1
        assert set(keys.read_authorized_keys(authorized).values()) == {"new"}
        assert {"old", "new"} <= set(held.read().split())  # the old file, whole, not emptied
    assert stat.S_IMODE(authorized.stat().st_mode) == 0o640  # and it keeps its mode
    assert [p.name for p in authorized.parent.iterdir() if "partial" in p.name] == []


def test_existing_keys_are_never_overwritten(tmp_path: Path) -> None:
    keys.generate(tmp_path, nodes=["node1"], controllers=["runner"])
    before = (keys.node_dir(tmp_path, "node1") / "host.key_secret").read_bytes()
    with pytest.raises(keys.KeyFileError, match="refusing to overwrite"):
        keys.add_node(tmp_path, "node1")
    assert (keys.node_dir(tmp_path, "node1") / "host.key_secret").read_bytes() == before


def test_malformed_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "authorized_keys"
    bad.write_text("# comment\n\nnot-a-key someone\n")
    with pytest.raises(keys.KeyFileError, match="authorized_keys:3"):
        keys.read_authorized_keys(bad)
    with pytest.raises(keys.KeyFileError, match="cannot read key pair"):
        keys.load_agent_keys(tmp_path / "nowhere")
    keys.generate(tmp_path / "k", nodes=[], controllers=["lonely"])
    lonely = keys.load_controller_keys(keys.controller_dir(tmp_path / "k", "lonely"))
    with pytest.raises(keys.KeyFileError, match="no pinned key for node 'node9'"):
        lonely.agent_key("node9")


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "k"
    assert keys.main(["generate", str(folder), "--nodes", "n1", "--controllers", "c1"]) == 0
    assert "node n1:" in capsys.readouterr().out
    assert keys.main(["add-controller", str(folder), "c2"]) == 0
    assert keys.main(["revoke-controller", str(folder), "c1"]) == 0
    assert keys.main(["show", str(folder)]) == 0
    assert "accepts c2" in capsys.readouterr().out
    assert keys.main(["generate", str(folder), "--nodes", "n1"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "refusing to overwrite" in error
    with pytest.raises(SystemExit) as stopped:
        keys.main(["rotate"])
    assert stopped.value.code == 2


def test_a_controller_key_is_revoked_on_one_node_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22, part 7: there was no way to revoke a key on one node."""
    folder = tmp_path / "k"
    keys.generate(folder, nodes=["n1", "n2", "n3"], controllers=["c1", "c2"])
    assert keys.main(["revoke-controller", str(folder), "c1", "--on", "n2"]) == 0
    assert "on 1 node(s) (n2)" in capsys.readouterr().out
    accepted = {
        node: set(
            keys.read_authorized_keys(keys.node_dir(folder, node) / "authorized_keys").values()
        )
        for node in ("n1", "n2", "n3")
    }
    assert accepted == {"n1": {"c1", "c2"}, "n2": {"c2"}, "n3": {"c1", "c2"}}
    before = (keys.node_dir(folder, "n1") / "authorized_keys").read_bytes()
    assert keys.main(["revoke-controller", str(folder), "c1", "--on", "n1", "--on", "n9"]) == 1
    assert "no node 'n9'" in capsys.readouterr().err
    assert (keys.node_dir(folder, "n1") / "authorized_keys").read_bytes() == before  # untouched


def test_roles_are_read_from_authorized_keys_and_a_typo_is_a_clear_error(tmp_path: Path) -> None:
    keys.generate(tmp_path / "k", nodes=["coordinator"], controllers=["w", "c", "any"])
    keys.set_roles(tmp_path / "k", "w", ["worker"], on="coordinator")
    keys.set_roles(tmp_path / "k", "c", ["client", "monitor"], on="coordinator")
    path = keys.node_dir(tmp_path / "k", "coordinator") / "authorized_keys"
    entries = {name: roles for name, roles in curve.read_authorized_entries(path).values()}
    assert entries == {"w": {"worker"}, "c": {"client", "monitor"}, "any": None}
    keys.set_roles(tmp_path / "k", "w", [], on="coordinator")  # no roles: any, as before
    assert {n: r for n, r in curve.read_authorized_entries(path).values()}["w"] is None
    with pytest.raises(keys.KeyFileError, match="unknown role wizard"):
        keys.set_roles(tmp_path / "k", "w", ["wizard"], on="coordinator")
    path.write_text(path.read_text().replace("roles=client,monitor", "roles=clinet"))
    with pytest.raises(keys.KeyFileError, match=r"authorized_keys:\d+: unknown role clinet"):
        curve.read_authorized_entries(path)
