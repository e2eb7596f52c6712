from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "pytest_theory.django_project.apps.core"
    label = "core"
    verbose_name = "Core tools"
