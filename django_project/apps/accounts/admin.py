from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from pytest_theory.django_project.apps.accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("email", "username", "is_profile_complete", "is_staff", "created_at")
    search_fields = ("email", "username")
    ordering = ("email",)
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Profile", {"fields": ("bio", "date_of_birth", "phone_number", "is_profile_complete")}),
    )
