"""Email login: ``authenticate(email=..., password=...)``, case-insensitive."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class EmailBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        email = kwargs.pop("email", None) or username
        return super().authenticate(request, username=email, password=password, **kwargs)
