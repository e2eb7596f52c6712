"""Settings every environment shares. SQLite by default; ``DATABASE_URL`` selects another
database (``postgres://user:pass@host:5432/name`` for PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parents[3]  # the repository
VAR_DIR = Path(os.environ.get("THEORY_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite opens a file in it

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-development-key-change-me")
DEBUG = False
ALLOWED_HOSTS: list[str] = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "pytest_theory.django_project.apps.accounts",
    "pytest_theory.django_project.apps.runs",
    "pytest_theory.django_project.apps.storage",
    "pytest_theory.django_project.apps.leases",
    "pytest_theory.django_project.apps.core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pytest_theory.django_project.theory_site.urls"
WSGI_APPLICATION = "pytest_theory.django_project.theory_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Take the write lock when a transaction begins, so concurrent writers queue
    # instead of failing with "database is locked" half-way (the ledger relies on it).
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
    # Many run_processor processes queue on that lock; wait for it longer than SQLite's 5 s.
    DATABASES["default"]["OPTIONS"]["timeout"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["pytest_theory.django_project.apps.accounts.backends.EmailBackend"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# -- pytest-theory ------------------------------------------------------------------

#: The artifact world: facet folders artifacts/, plan/, streams/, scratch/.
THEORY_WORLD_ROOT = Path(os.environ.get("THEORY_WORLD_ROOT", VAR_DIR / "world"))
#: Extra registry roots (the built-in processors/ is always searched).
THEORY_REGISTRY_ROOTS: list[str] = [
    p for p in os.environ.get("THEORY_REGISTRY_PATH", "").split(os.pathsep) if p
]
#: The ledger's anchor: an append-only file outside the database (see runs/ledger.py).
THEORY_LEDGER_ANCHOR = Path(os.environ.get("THEORY_LEDGER_ANCHOR", VAR_DIR / "ledger.anchor"))
#: Path leases in the database; a processor's policy must also set leases.enable_path_leases.
LEASES_ENABLED = os.environ.get("LEASES_ENABLED", "false").lower() == "true"
#: Applied where a processor's registry.yaml declares no policy of its own.
THEORY_DEFAULT_POLICY = {
    # max_usd_micro caps a plan's total (reserved + spent) when this processor runs on it.
    "budget": {"max_usd_micro": 1_000_000, "reserve_usd_micro": 0},
    "retry": {"max_attempts": 1, "backoff_ms": [500]},
    "leases": {"default_ttl_s": 3600, "enable_path_leases": False},
}
