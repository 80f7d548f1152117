"""A signed-in person, whether they are an admin, and which team user they are.

A person is matched to a user through links kept in the team store (records of kind ``person``): by
their provider subject first, then by their email (a link an admin made, or one sign-in made when
``[identity.members] create = true`` let it create the user). Links are what make the match: a user
whose *name* looks like someone's email is not theirs.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from proxy.config.identity import IdentityConfig
from proxy.errors import PermissionDenied
from proxy.state.team import TeamStore, User
from proxy.team import users

PERSON = "person"  # record kind: a person's subject or email -> the user a sign-in lands on
PERSON_OF = "person_of"  # record kind: a user -> the person it belongs to (a person may have a second user)


@dataclass(frozen=True, slots=True)
class Person:
    source: str  # "sso" or "header"
    subject: str  # the provider's `sub` (for a header: the header's value)
    email: str | None = None
    email_verified: bool = False
    groups: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """How an audit record names this person."""
        if self.source == "header":
            return f"header:{self.subject}"
        return f"sso:{self.subject}" + (f" <{self.email}>" if self.email else "")

    def link_keys(self) -> list[str]:
        keys = [f"sub:{self.source}:{self.subject}"]
        if self.email and (self.email_verified or self.source == "header"):
            keys.append(f"email:{self.email.lower()}")
        return keys


def person_from_claims(claims: dict, config: IdentityConfig) -> Person:
    groups = claims.get(config.group_claim) or ()
    if isinstance(groups, str):
        groups = (groups,)
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return Person("sso", str(claims["sub"]), email, claims.get("email_verified") is True,
                  tuple(g for g in groups if isinstance(g, str)))


def person_from_header(value: str, groups: str, config: IdentityConfig) -> Person:
    value = value.strip()
    return Person("header", value, value if "@" in value else None, "@" in value,
                  tuple(g.strip() for g in groups.split(",") if g.strip()))


def is_admin(person: Person, config: IdentityConfig) -> bool:
    """An admin is a configured subject, a configured (verified) email, or a member of a configured group."""
    if person.subject in config.admin_subjects:
        return True
    if person.email and (person.email_verified or person.source == "header") and \
            person.email.lower() in config.admin_emails:
        return True
    return bool(set(person.groups) & set(config.admin_groups))


async def link(store: TeamStore, person_key: str, user: str, *, person: str | None = None) -> None:
    """``person_key`` (``email:…`` or ``sub:…``) signs in as ``user`` from now on; ``user`` belongs to
    ``person`` (their email key when known, else ``person_key``)."""
    await store.put_record(PERSON, person_key, user.encode(), user, None)
    await belongs_to(store, user, person or person_key)


async def belongs_to(store: TeamStore, user: str, person: str) -> None:
    """Record that ``user`` is one of ``person``'s users (a second user of theirs signs in elsewhere)."""
    await store.put_record(PERSON_OF, user, person.encode(), person, None)


async def person_of(store: TeamStore, user: str) -> str | None:
    found = await store.get_record(PERSON_OF, user)
    return found[0].decode() if found else None


async def member_user(store: TeamStore, person: Person, config: IdentityConfig) -> User | None:
    """The user this person is (linked by subject or email), made now when the config allows it."""
    for key in person.link_keys():
        found = await store.get_record(PERSON, key)
        if found is not None:
            user = await store.get_user(found[0].decode())
            if user is not None:
                for other in person.link_keys():  # the email matched: remember the subject too
                    if other != key and await store.get_record(PERSON, other) is None:
                        await link(store, other, user.name, person=person.link_keys()[-1])
                return user
    if not config.create_members:
        return None
    if not person.email or not (person.email_verified or person.source == "header"):
        raise PermissionDenied("Your sign-in carries no verified email, so no subrelay user can be made for you; "
                               "ask an admin to add you.", code="member_not_found")
    domain = person.email.rsplit("@", 1)[-1].lower()
    if config.member_domains and domain not in config.member_domains:
        raise PermissionDenied(f"Members of this subrelay sign in with an address at "
                               f"{', '.join(config.member_domains)}.", code="member_not_allowed")
    user, _ = await users.add_user(store, await _free_name(store, person.email))
    for key in person.link_keys():
        await link(store, key, user.name, person=person.link_keys()[-1])
    return user


async def _free_name(store: TeamStore, email: str) -> str:
    base = re.sub(r"[^a-z0-9._-]", "-", email.split("@", 1)[0].lower()).strip("-._")[:40] or "member"
    if not base[0].isalnum():
        base = "m" + base
    name = base
    while await store.get_user(name) is not None:
        name = f"{base}-{secrets.token_hex(2)}"
    return name
