"""Staff passwords are hashed at production cost outside the test suite (which swaps in
a cheap hasher for speed: tests/conftest.py)."""

from __future__ import annotations

from rapidresponse import passwords


def test_production_hashing_is_argon2id_at_rfc_9106_low_memory_cost() -> None:
    hasher = passwords.PRODUCTION_HASHER
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) >= (3, 65536, 4)
    made = hasher.hash("correct horse battery staple")
    assert made.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    # A full-cost hash is checked as well as any other (a hash carries its parameters).
    assert passwords.verify_password(made, "correct horse battery staple")
    assert not passwords.verify_password(made, "correct horse battery stapler")


def test_the_suite_hashes_cheaply_and_still_checks() -> None:
    made = passwords.hash_password("a long enough password")
    assert made.startswith("$argon2id$") and "t=1" in made
    assert passwords.verify_password(made, "a long enough password")
    assert not passwords.verify_password(made, "a long enough passworD")
