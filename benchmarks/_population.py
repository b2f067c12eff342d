"""Who the benchmark's users are and which organizations each belongs to, deterministically.

User ``i`` is a member of ``orgs_per_user`` organizations spread evenly: with
100 organizations and 3 each, 2,000 users give every organization exactly 60
members. Every process (orchestrator, load generators, checks) derives the same
answer from the same numbers, so nothing but the numbers crosses a pipe.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_PREFIX = "bench-u"
ORG_PREFIX = "bench-o"
# Distinct strides keep a user's organizations distinct (for up to 100 organizations, 3 per user).
_STRIDES = (0, 37, 74, 11, 48, 85, 22, 59)


@dataclass(frozen=True, slots=True)
class Population:
    organizations: int = 100
    orgs_per_user: int = 3

    def user(self, index: int) -> str:
        return f"{USER_PREFIX}{index}"

    def org(self, index: int) -> str:
        return f"{ORG_PREFIX}{index}"

    def orgs_of(self, index: int) -> tuple[str, ...]:
        return tuple(self.org((index + stride) % self.organizations) for stride in _STRIDES[: self.orgs_per_user])

    def members_per_org(self, users: int) -> dict[str, int]:
        """How many of users ``0..users-1`` belong to each organization."""
        counts = {self.org(index): 0 for index in range(self.organizations)}
        for index in range(users):
            for org in self.orgs_of(index):
                counts[org] += 1
        return counts

    def __post_init__(self) -> None:
        if not 1 <= self.orgs_per_user <= len(_STRIDES):
            raise ValueError(f"orgs_per_user must be 1..{len(_STRIDES)}")
        if len(set(self.orgs_of(0))) != self.orgs_per_user:
            raise ValueError("organizations too few for distinct memberships; use more organizations")
