"""Development: SQLite and a world under ./var unless the environment says otherwise."""

from pytest_theory.django_project.theory_site.settings.base import *  # noqa: F403

DEBUG = True
