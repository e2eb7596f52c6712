from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pytest_theory.django_project.apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"
