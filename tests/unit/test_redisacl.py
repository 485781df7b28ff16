"""infra/redisacl.py: the Redis users every target loads, and the rotation's two-password form."""

from __future__ import annotations

import hashlib

from infra import redisacl


def _h(pw: str) -> str:
    return "#" + hashlib.sha256(pw.encode()).hexdigest()


def test_every_user_hashed_default_off_no_plaintext():
    pw = {name: f"{name}-secret" for name in redisacl.USERS}
    text = redisacl.acl_file(pw)
    lines = text.splitlines()
    assert lines[0] == "user default off"
    assert [ln.split()[1] for ln in lines[1:]] == list(redisacl.USERS)
    for name, line in zip(redisacl.USERS, lines[1:]):
        assert f" on {_h(pw[name])} " in line
    assert not any(p in text for p in pw.values())
    assert "nopass" not in text and "+@all" not in text


def test_a_rotation_accepts_both_passwords_then_only_the_new():
    pw = {name: f"{name}-secret" for name in redisacl.USERS}
    both = redisacl.acl_file({**pw, "app": ["old", "new"]})
    app = next(ln for ln in both.splitlines() if ln.startswith("user app "))
    assert f" on {_h('old')} {_h('new')} ~recon:* " in app
    only = redisacl.acl_file({**pw, "app": ["new"]})
    assert _h("old") not in only and _h("new") in only


def test_the_replication_include_names_the_replication_user():
    assert redisacl.replication_include("p") == 'masteruser replication\nmasterauth "p"\n'
