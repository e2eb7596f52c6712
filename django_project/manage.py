#!/usr/bin/env python
"""The control plane's command line: ``python -m pytest_theory.django_project.manage <command>``."""

import os
import sys


def main() -> None:
    os.environ.setdefault(
        "DJANGO_SETTINGS_MODULE", "pytest_theory.django_project.theory_site.settings.default"
    )
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
