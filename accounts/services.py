"""Writes on users, roles and API tokens, with ESD's rules and messages (esd-behaviour.md §3, §5, §6) and the
hardening of architecture.md §5. The API and the admin both call these.

Each service checks everything before it writes anything, inside one transaction, so a refused request leaves
the database as it was (ESD itself deleted users one by one and stopped at the first refusal).
"""

import secrets
from collections.abc import Iterable

from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from esd.errors import Forbidden, Invalid

from . import esd_permissions, selectors
from .access import require
from .models import ApiToken, Role, User, token_digest
from .permissions import holds, holds_string, permission_strings
from .roles import BUILTIN_ROLES, IT_OPERATOR


def _permission_objects(strings: Iterable[str]) -> list[Permission]:
    """The Django permissions that mirror these ESD strings (their `esd_*` rows are created if missing, since a
    post_migrate handler may run before Django has created them)."""
    pairs = {pair for string in strings for pair in esd_permissions.model_permissions(string)}
    role_type = ContentType.objects.get_for_model(Role)
    for string in strings:
        Permission.objects.get_or_create(
            content_type=role_type,
            codename=esd_permissions.codename(string),
            defaults={"name": f"ESD {string}"},
        )
    query = Q(pk__in=[])
    for app_label, codename in pairs:
        query |= Q(content_type__app_label=app_label, codename=codename)
    return list(Permission.objects.filter(query))


def role_set_permissions(role: Role, strings: Iterable[str]) -> None:
    role.group.permissions.set(_permission_objects(sorted(set(strings), key=esd_permissions.sort_key)))


@transaction.atomic
def roles_ensure_builtin() -> Role:
    """Create (or repair) the built-in roles (`IT Operator`, holding every `*:all`). Idempotent.

    Returns IT Operator."""
    for name, strings in BUILTIN_ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        role, _ = Role.objects.get_or_create(group=group, defaults={"builtin": True})
        if not role.builtin:
            role.builtin = True
            role.save(update_fields=["builtin", "updated_at"])
        role_set_permissions(role, strings)
    return Role.objects.select_related("group").get(group__name=IT_OPERATOR)


def role_upsert_check(*, actor: User, name: str, permissions: list[str]) -> Role | None:
    """Refuse (esd.errors) if `actor` may not create or overwrite role `name` with these permissions.

    Returns the existing role, if any."""
    require(actor, "role.write")
    role = Role.objects.select_related("group").filter(group__name=name).first()
    if role is None:
        role_name_free_check(name)
    if role is not None and role.builtin:
        raise Invalid(f"cannot update default role {name}: built-in roles are fixed")
    if role is not None and role.created_by_id != actor.pk and not holds(actor, "role", "all"):
        raise Invalid(f"creator {actor.username} not have permission to update role {name}")
    # role:all lets one edit any role, not hand out what one lacks: a role's members gain every permission in it
    # (on a rewrite, at once), so the actor must hold each one itself, as when giving roles to users.
    for permission in permissions:
        if not holds_string(actor, permission):
            raise Invalid(
                f"creator {actor.username} have not permission to create role with permission: [{permission}]",
            )
    return role


@transaction.atomic
def role_upsert(*, actor: User, name: str, permissions: list[str]) -> Role:
    """`POST /roles`: create the role (the actor becomes its creator) or overwrite its permissions.

    ESD made the rewriter the creator; here a role:all rewrite keeps the creator, since a role's creator also sees
    the checkpoints shared with it (issue 26.13)."""
    role = role_upsert_check(actor=actor, name=name, permissions=permissions)
    if role is None:
        group, _ = Group.objects.get_or_create(name=name)
        role = Role(group=group, created_by=actor)
    role.full_clean(exclude=["group"])
    role.save()
    role_set_permissions(role, permissions)
    return role


def role_delete_check(*, actor: User, roles: list[Role], names: Iterable[str] = ()) -> None:
    """Refuse (esd.errors) if `actor` may not delete these roles (`names` may add names that match no role)."""
    names = list(names) or [role.name for role in roles]
    if any(role.builtin for role in roles) or IT_OPERATOR in names:
        raise Invalid("cannot delete default role")
    if holds(actor, "role", "all"):
        return
    may_delete_own = holds(actor, "role", "create")
    creators = {role.name: role.created_by_id for role in roles}
    for name in names:
        if not may_delete_own or creators.get(name, actor.pk) != actor.pk:
            raise Forbidden(
                f"user {actor.username} does not have permission to delete role {name}: it needs role:all, "
                "or role:create and to be the role's creator",
            )


@transaction.atomic
def role_delete_many(*, actor: User, names: list[str]) -> int:
    """`DELETE /roles`: the roles go, and with them every user's membership. Unknown names are ignored."""
    names = list(dict.fromkeys(names))
    roles = list(Role.objects.select_related("group").filter(group__name__in=names))
    role_delete_check(actor=actor, roles=roles, names=names)
    Group.objects.filter(pk__in=[role.pk for role in roles]).delete()
    return len(roles)


def user_set_roles(*, user: User, roles: list[Role]) -> None:
    """Replace a user's roles, keeping their order (memberships are read back in insertion order)."""
    membership = User.groups.through
    membership.objects.filter(user=user).delete()
    membership.objects.bulk_create(membership(user=user, group_id=role.pk) for role in roles)


def _check_may_manage(actor: User, target: User | None) -> None:
    """Rules 2-3 of esd-behaviour.md §3.6, plus: only a superuser may change or delete a superuser."""
    require(actor, "user.manage")
    if target is None:
        return
    if target.created_by_id != actor.pk and not holds(actor, "user", "all"):
        raise Invalid(
            f"username {target.username} has already exists, creator {actor.username} does not have permissions "
            "to change it",
        )
    if target.is_superuser and not actor.is_superuser:
        raise Forbidden(f"only a superuser may change or delete the superuser {target.username}")


def user_act_as_check(*, actor: User, target: User) -> None:
    """Refuse (esd.errors) if `actor` may not take `target`'s identity: mint a token for it or set its password.

    Whoever holds a user's token or password acts with every permission that user holds, so this is granting those
    permissions: the actor must be allowed to manage the target and hold each of its permission strings itself
    (only a superuser takes over a superuser). Anyone may do it for themselves."""
    if target.pk == actor.pk:
        return
    _check_may_manage(actor, target)
    for permission in sorted(permission_strings(target), key=esd_permissions.sort_key):
        if not holds_string(actor, permission):
            raise Forbidden(
                f"{actor.username} may not act as {target.username}: {target.username} holds [{permission}], "
                f"which {actor.username} does not",
            )


def password_check(password: str, user: User) -> None:
    """The admin's password rules (AUTH_PASSWORD_VALIDATORS) on every path that sets a password from a request."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise Invalid(f"password refused: {' '.join(exc.messages)}") from exc


def username_taken_check(username: str, *, exclude: User | None = None) -> None:
    """Usernames are unique whatever their case (`Admin` beside `admin` would be two people to a reader, one to
    a typo); the stored spelling is kept as given. A new user (`exclude` None or unsaved) may not take a role's
    name either (user_name_free_check)."""
    others = User.objects.filter(username__iexact=username)
    if exclude is not None and exclude.pk is not None:
        others = others.exclude(pk=exclude.pk)
    clash = others.values_list("username", flat=True).first()
    if clash is not None:
        raise Invalid(f"username {username} is taken: {clash} already exists (usernames ignore case)")
    if exclude is None or exclude.pk is None:
        user_name_free_check(username)


# Roles and users share one namespace. ESD's visibility lists (a checkpoint's roles-or-users, an endpoint's roles)
# name either, so a role named like a user would receive what was shared with that user by name, and a user named
# like a role what was shared with the role. New names that would clash are refused, whatever their case; a list
# name that still matches both (data from before this rule) means the role. Grants of a job to its creator never go
# through a name (grants.grant_new's owner).


def role_name_free_check(name: str) -> None:
    clash = User.objects.filter(username__iexact=name).values_list("username", flat=True).first()
    _refuse_a_shared_name(f"role name {name}", f"the user {clash}" if clash else None)


def user_name_free_check(username: str) -> None:
    clash = Group.objects.filter(name__iexact=username).values_list("name", flat=True).first()
    _refuse_a_shared_name(f"username {username}", f"the role {clash}" if clash else None)


def _refuse_a_shared_name(name: str, holder: str | None) -> None:
    if holder is not None:
        raise Invalid(
            f"{name} is taken by {holder}: roles and users share one namespace, "
            "since visibility lists name either; choose another name"
        )


def _check_it_operator_left(*, losing: set[int]) -> None:
    """Refuse a change after which no active user holds the IT Operator role (nobody could administer)."""
    operators = set(selectors.it_operator_user_ids())
    if operators and not operators - losing:
        raise Invalid("refused: no active IT Operator user would be left; give the role to another user first")


def user_roles_check(*, actor: User, user: User | None, roles: list[Role]) -> None:
    """Refuse (esd.errors) if `actor` may not give `user` (None: a new user) exactly these roles: the actor must hold
    every permission it hands out, and some active user must keep IT Operator."""
    for role in roles:
        for permission in selectors.role_permission_strings(role):
            if not holds_string(actor, permission):
                raise Forbidden(f"creator has no permission to assign permission [{permission}] to others")
    if user is not None and user.pk is not None and IT_OPERATOR not in {role.name for role in roles}:
        _check_it_operator_left(losing={user.pk})


@transaction.atomic
def user_upsert(*, actor: User, username: str, password: str, role_names: list[str]) -> User:
    """`POST /users` (not initial): create the user, or overwrite its password and roles."""
    target = User.objects.filter(username=username).first()
    _check_may_manage(actor, target)
    if target is not None:  # it sets the password: the admin's act-as rule, one rule for both
        user_act_as_check(actor=actor, target=target)
    username_taken_check(username, exclude=target)
    role_names = list(dict.fromkeys(role_names))
    found = {role.name: role for role in selectors.roles_with_permissions(names=role_names)}
    user_roles_check(actor=actor, user=target, roles=[found[name] for name in role_names if name in found])
    missing = [name for name in role_names if name not in found]
    if missing:
        raise Invalid(f'user roles "{missing[0]}" not exist')
    user = target or User(username=username)
    password_check(password, user)
    user.set_password(password)
    user.created_by = actor
    user.full_clean(exclude=["password"])
    user.save()
    user_set_roles(user=user, roles=[found[name] for name in role_names])
    return user


@transaction.atomic
def user_create_initial(*, username: str, password: str) -> User:
    """`POST /users {"initial": true}`: the first administrator, accepted only while no user exists.

    ESD let this overwrite any user and make it admin, on every call; here it is a first-run step only.
    The user holds IT Operator and may use the admin.
    """
    role = roles_ensure_builtin()
    # Lock the built-in role's row so two first-run requests cannot both find the table empty.
    Group.objects.select_for_update().get(pk=role.pk)
    if User.objects.exists():
        raise Forbidden(
            "initial user already exists: ask an administrator (user:all) to create your account, "
            "or use `python manage.py esd_bootstrap`",
        )
    username_taken_check(username)
    user = User(username=username, is_staff=True, is_superuser=True)
    password_check(password, user)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    _record_own_creation(user)
    user_set_roles(user=user, roles=[role])
    _record_first_admin(role, user)
    return user


def _record_first_admin(role: Role, user: User) -> None:
    # As in ESD, the first administrator is recorded as the built-in role's creator.
    if role.created_by_id is None:
        role.created_by = user
        role.save(update_fields=["created_by", "updated_at"])


def _record_own_creation(user: User) -> None:
    # An account nobody created (the first administrator, esd_bootstrap's) is its own creator, as in ESD.
    if user.created_by_id is None:
        user.created_by = user
        user.save(update_fields=["created_by"])


@transaction.atomic
def user_delete_many(*, actor: User, usernames: list[str]) -> int:
    """`DELETE /users`: all the named users or none. Unknown names are ignored, and so are the names of users the
    actor may not manage (another creator's, without user:all): answering "not yours" would tell it they exist.
    The user's objects stay."""
    usernames = list(dict.fromkeys(usernames))
    named = User.objects.filter(username__in=usernames)
    if not holds(actor, "user", "all"):
        named = named.filter(Q(pk=actor.pk) | Q(created_by=actor))
    found = {user.username: user for user in named}
    targets = [found[name] for name in usernames if name in found]
    user_delete_check(actor=actor, targets=targets)
    User.objects.filter(pk__in=[user.pk for user in targets]).delete()
    return len(targets)


def user_delete_check(*, actor: User, targets: list[User]) -> None:
    """Refuse (esd.errors) if `actor` may not delete every one of `targets`."""
    require(actor, "user.manage")
    for target in targets:
        if target.pk == actor.pk:
            raise Invalid(f"cannot delete yourself ({actor.username}); ask another administrator")
        _check_may_manage(actor, target)
    _check_it_operator_left(losing={user.pk for user in targets})


def api_token_create(*, user: User, name: str = "", actor: User | None = None) -> tuple[ApiToken, str]:
    """A new bearer token for `user`. Returns the row and the token itself, which is not stored and is shown once.

    `actor`: who asks for it (the admin); it must be allowed to act as `user` (user_act_as_check). None for the
    callers that are trusted already: manage.py on the server, and `POST /auth/token` with the user's password."""
    if actor is not None:
        user_act_as_check(actor=actor, target=user)
    raw = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, digest=token_digest(raw), hint=raw[:10])
    return token, raw


def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()


def auth_token_issue(*, username: str, password: str) -> tuple[ApiToken, str]:
    """`POST auth/token`: exchange a username and password for a new API token."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise Invalid("username or password is incorrect")
    return api_token_create(user=user, name="auth/token")


@transaction.atomic
def admin_ensure(*, username: str, password: str) -> User:
    """Create or update an administrator: IT Operator, staff and superuser, with this password (esd_bootstrap)."""
    role = roles_ensure_builtin()
    user = User.objects.filter(username=username).first() or User(username=username)
    username_taken_check(username, exclude=user)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    _record_own_creation(user)
    names = selectors.user_role_names([user]).get(user.pk, [])
    if IT_OPERATOR not in names:
        found = {existing.name: existing for existing in selectors.roles_with_permissions(names=names)}
        user_set_roles(user=user, roles=[found[name] for name in names if name in found] + [role])
    _record_first_admin(role, user)
    return user
