from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "pytest_theory.django_project.apps.storage"
    label = "storage"
    verbose_name = "Artifact storage"
