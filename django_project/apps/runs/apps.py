from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "pytest_theory.django_project.apps.runs"
    label = "runs"
    verbose_name = "Runs"
