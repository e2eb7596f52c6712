"""The custom user: ``authenticate(email=..., password=...)`` logs in."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models.functions import Lower


class UserManager(DjangoUserManager["User"]):
    """Creates users by email; looks them up by email whatever its case."""

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)

    def create_user(  # type: ignore[override]
        self,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        **extra: Any,
    ) -> User:
        if not email:
            raise ValueError("users log in with their email: it is required")
        email = self.normalize_email(email)
        return super().create_user(username or email, email, password, **extra)

    def create_superuser(  # type: ignore[override]
        self,
        username: str | None = None,
        email: str | None = None,
        password: str | None = None,
        **extra: Any,
    ) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(username, email, password, **extra)


class User(AbstractUser):
    email = models.EmailField("email address", unique=True)
    bio = models.TextField(blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    phone_number = models.CharField(max_length=32, blank=True)
    is_profile_complete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    objects = UserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this email already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.email
