from django.apps import AppConfig


class LeasesConfig(AppConfig):
    name = "pytest_theory.django_project.apps.leases"
    label = "leases"
    verbose_name = "Path leases"
