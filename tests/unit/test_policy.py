"""The policy loader (CONTRACT §4): the built-in policy, custom files, and every error named."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream.policy import EntityRule, PolicyError, default_policy, load_policy, parse_policy

CUSTOM = """
[roles]
organization = ["owner", "editor", "viewer"]

[entities.organization]
read = ["owner"]

[entities.invoice]
read = ["owner", "editor"]

[entities.post]
read = ["owner", "editor", "viewer"]
public = true
"""


def test_built_in_policy_is_the_contract_default() -> None:
    policy = default_policy()
    assert policy.organization_roles == ("admin", "member")
    assert dict(policy.entities) == {
        "organization": EntityRule("organization", frozenset({"admin", "member"})),
        "page": EntityRule("page", frozenset({"admin", "member"}), public=True),
        "attachment": EntityRule("attachment", frozenset({"admin", "member"})),
    }


def test_load_policy_without_a_path_is_the_built_in_one() -> None:
    assert load_policy(None) == default_policy()


def test_custom_policy_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(CUSTOM)
    policy = load_policy(path)
    assert policy.organization_roles == ("owner", "editor", "viewer")
    assert policy.knows_role("editor")
    assert not policy.knows_role("admin")
    assert policy.rule("invoice") == EntityRule("invoice", frozenset({"owner", "editor"}))
    post = policy.rule("post")
    assert post is not None
    assert post.public
    assert policy.rule("page") is None


def test_organization_is_readable_by_every_role_unless_narrowed() -> None:
    policy = parse_policy('[roles]\norganization = ["a", "b"]\n', source="t")
    assert policy.rule("organization") == EntityRule("organization", frozenset({"a", "b"}))
    narrowed = parse_policy(CUSTOM, source="t").rule("organization")
    assert narrowed is not None
    assert narrowed.read == frozenset({"owner"})


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match=r"nope\.toml: cannot read the policy file"):
        load_policy(path)


def errors_of(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="policy.toml")
    message = str(caught.value)
    assert message.startswith("policy.toml: ")
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[roles\norganization = 1", "not valid TOML"),
        ("roles = = 1", "not valid TOML"),
        ("", "missing table `[roles]`"),
        ("roles = 1", "missing table `[roles]`"),
        ("[roles]\n", "`roles.organization` must be a non-empty list"),
        ("[roles]\norganization = []", "`roles.organization` must be a non-empty list"),
        ('[roles]\norganization = "admin"', "`roles.organization` must be a non-empty list"),
        ('[roles]\norganization = ["a b"]', "'a b' is not a role name"),
        ("[roles]\norganization = [1]", "1 is not a role name"),
        ('[roles]\norganization = ["a", "a"]', "'a' is listed twice"),
        ('[roles]\norganization = ["a"]\nsystem = ["x"]', "unknown key `roles.system`"),
        ('[roles]\norganization = ["a"]\n[extra]\nx = 1', "unknown key `extra`"),
        ('[roles]\norganization = ["a"]\n[entities.page]\nread = []', "`entities.page.read` must be a non-empty list"),
        ('[roles]\norganization = ["a"]\n[entities.page]\npublic = true', "`entities.page.read` must be a non-empty"),
        ('[roles]\norganization = ["a"]\n[entities.page]\nread = "a"', "`entities.page.read` must be a non-empty"),
        (
            '[roles]\norganization = ["a"]\n[entities.page]\nread = ["a", "b"]',
            "`entities.page.read` names roles not declared in `roles.organization`: ['b']",
        ),
        (
            '[roles]\norganization = ["a"]\n[entities.page]\nread = ["a"]\nwrite = ["a"]',
            "unknown key `entities.page.write`",
        ),
        (
            '[roles]\norganization = ["a"]\n[entities.page]\nread = ["a"]\npublic = "yes"',
            "`entities.page.public` must be",
        ),
        (
            '[roles]\norganization = ["a"]\n[entities.organization]\nread = ["a"]\npublic = true',
            "only product entities",
        ),
        ('[roles]\norganization = ["a"]\n[entities.membership]\nread = ["a"]', "`entities.membership`: membership"),
        ('[roles]\norganization = ["a"]\n[entities.Page]\nread = ["a"]', "`entities.Page`: an entity name is lower"),
        ('[roles]\norganization = ["a"]\n[entities."a.b"]\nread = ["a"]', "an entity name is lower case"),
        ('entities = 1\n[roles]\norganization = ["a"]', "`entities` must be a table"),
        ('[roles]\norganization = ["a"]\n[entities]\npage = 1', "`entities.page` must be a table"),
    ],
)
def test_invalid_policies_are_rejected_naming_the_key(text: str, expected: str) -> None:
    assert expected in errors_of(text)


def test_every_problem_is_reported_at_once() -> None:
    message = errors_of(
        'bogus = 1\n[roles]\norganization = ["a"]\n[entities.page]\nread = []\n[entities.doc]\nread = ["z"]'
    )
    assert "unknown key `bogus`" in message
    assert "`entities.page.read`" in message
    assert "`entities.doc.read` names roles not declared" in message
