"""Development: SQLite and a world under ./var unless the environment says otherwise."""

from django_project.theory_site.settings.base import *  # noqa: F403

DEBUG = True
