from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "django_project.apps.runs"
    label = "runs"
    verbose_name = "Runs"
