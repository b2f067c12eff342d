"""The benchmark population: every user in distinct organizations, organizations evenly filled."""

from __future__ import annotations

from benchmarks._population import Population


def test_two_thousand_users_fill_a_hundred_orgs_evenly() -> None:
    population = Population(organizations=100, orgs_per_user=3)
    assert set(population.members_per_org(2000).values()) == {60}
    assert all(len(set(population.orgs_of(index))) == 3 for index in range(2000))
    assert population.orgs_of(5) == ("bench-o5", "bench-o42", "bench-o79")
