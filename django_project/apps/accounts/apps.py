from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "django_project.apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"
