"""The permission policy: which organization roles exist and who may read which entity type.

Loaded once at start from TOML (CONTRACT §4) and validated with messages that
name the offending key. The decisions themselves live in ``userstream.permissions``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

MEMBERSHIP = "membership"
ORGANIZATION = "organization"
ENTITY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOP_LEVEL_KEYS = {"roles", "entities"}
_ROLE_KINDS = {"organization"}
_ENTITY_KEYS = {"read", "public"}


class PolicyError(ValueError):
    """The policy file is invalid; the message lists every problem found."""


@dataclass(frozen=True, slots=True)
class EntityRule:
    """What the policy says about one entity type."""

    name: str
    read: frozenset[str]
    public: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy. ``entities`` never contains ``membership``."""

    organization_roles: tuple[str, ...]
    entities: Mapping[str, EntityRule] = field(default_factory=dict)

    def knows_role(self, role: str) -> bool:
        return role in self.organization_roles

    def rule(self, entity_type: str) -> EntityRule | None:
        return self.entities.get(entity_type)


def default_policy() -> Policy:
    text = resources.files("userstream").joinpath("default_policy.toml").read_text()
    return parse_policy(text, source="built-in policy")


def load_policy(path: Path | None) -> Policy:
    """The policy at ``path``, or the built-in one when ``path`` is None."""
    if path is None:
        return default_policy()
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str) -> Policy:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    problems: list[str] = []
    roles = _parse_roles(document, problems)
    entities = _parse_entities(document, set(roles), problems)
    problems.extend(f"unknown key `{key}`" for key in sorted(document.keys() - _TOP_LEVEL_KEYS))
    if problems:
        raise PolicyError(f"{source}: " + "; ".join(problems))
    if ORGANIZATION not in entities:
        # The context entity is readable by every member unless the policy narrows it.
        entities[ORGANIZATION] = EntityRule(ORGANIZATION, frozenset(roles))
    return Policy(organization_roles=tuple(roles), entities=entities)


def _parse_roles(document: Mapping[str, Any], problems: list[str]) -> list[str]:
    section = document.get("roles")
    if not isinstance(section, dict):
        problems.append("missing table `[roles]` with `organization = [...]`")
        return []
    problems.extend(f"unknown key `roles.{key}`" for key in sorted(section.keys() - _ROLE_KINDS))
    roles = section.get("organization")
    if not isinstance(roles, list) or not roles:
        problems.append("`roles.organization` must be a non-empty list of role names")
        return []
    valid: list[str] = []
    for role in roles:
        if not isinstance(role, str) or not _ROLE_NAME.fullmatch(role):
            problems.append(f"`roles.organization`: {role!r} is not a role name ([A-Za-z0-9_-]{{1,64}})")
        elif role in valid:
            problems.append(f"`roles.organization`: {role!r} is listed twice")
        else:
            valid.append(role)
    return valid


def _parse_entities(document: Mapping[str, Any], roles: set[str], problems: list[str]) -> dict[str, EntityRule]:
    section = document.get("entities", {})
    if not isinstance(section, dict):
        problems.append("`entities` must be a table of `[entities.<name>]` tables")
        return {}
    entities: dict[str, EntityRule] = {}
    for name, body in section.items():
        where = f"entities.{name}"
        if name == MEMBERSHIP:
            problems.append(f"`{where}`: membership events always reach only the member; it cannot be declared")
            continue
        if not ENTITY_NAME.fullmatch(name):
            problems.append(f"`{where}`: an entity name is lower case letters, digits and _ ([a-z][a-z0-9_]*)")
            continue
        if not isinstance(body, dict):
            problems.append(f"`{where}` must be a table")
            continue
        problems.extend(f"unknown key `{where}.{key}`" for key in sorted(body.keys() - _ENTITY_KEYS))
        rule = _parse_entity(name, body, roles, problems)
        if rule is not None:
            entities[name] = rule
    return entities


def _parse_entity(name: str, body: Mapping[str, Any], roles: set[str], problems: list[str]) -> EntityRule | None:
    where = f"entities.{name}"
    read = body.get("read")
    if not isinstance(read, list) or not read:
        problems.append(f"`{where}.read` must be a non-empty list of roles")
        return None
    undeclared = [role for role in read if role not in roles]
    if undeclared:
        problems.append(f"`{where}.read` names roles not declared in `roles.organization`: {undeclared}")
        return None
    public = body.get("public", False)
    if not isinstance(public, bool):
        problems.append(f"`{where}.public` must be true or false")
        return None
    if public and name == ORGANIZATION:
        problems.append(f"`{where}.public`: only product entities can be public")
        return None
    return EntityRule(name=name, read=frozenset(read), public=public)
