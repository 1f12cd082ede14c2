import logging
import os

from extproc.policy.store import PolicyStore

GOOD = "routes: [{name: api, match: {path_prefix: /api/}}]\n"


def test_valid_change_is_swapped_in(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    store = PolicyStore(tmp_path)
    old = store.current
    path.write_text(GOOD + "  # edited\n")
    os.utime(path, ns=(1, 1))  # mtime granularity must not hide the change
    store.check_for_changes()
    assert store.current is not old
    assert store.current.revision != old.revision
    assert store.reloads_ok == 1


def test_invalid_change_keeps_last_good_policy(tmp_path, caplog):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    store = PolicyStore(tmp_path)
    good = store.current
    path.write_text("routes: [{name: api, match: {path_prefix: api}}]\n")
    with caplog.at_level(logging.ERROR, "extproc.policy"):
        assert store.reload() is False
    assert store.current is good
    assert store.reloads_failed == 1
    assert store.last_errors == [f"{path}:1: routes[0].match.path_prefix: must start with /"]
    assert "still serving revision " + good.revision in caplog.text


def test_unchanged_files_are_not_reloaded(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    store = PolicyStore(tmp_path)
    store.check_for_changes()
    assert store.reloads_ok == 0 and store.reloads_failed == 0


def test_new_and_deleted_files_are_noticed(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    store = PolicyStore(tmp_path)
    (tmp_path / "q.yaml").write_text("routes: [{name: other}]\n")
    store.check_for_changes()
    assert set(store.current.routes) == {"api", "other"}
    (tmp_path / "q.yaml").unlink()
    store.check_for_changes()
    assert set(store.current.routes) == {"api"}
