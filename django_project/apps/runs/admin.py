from django.contrib import admin

from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent, Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Balances are read-only: they change through runs and ``manage.py plans``, which write
    the ledger (``verify_ledger`` checks every plan against it)."""

    list_display = ("key", "owner", "budget_usd_micro", "reserved_usd_micro", "spent_usd_micro")
    search_fields = ("key",)
    readonly_fields = (
        "key",
        "budget_usd_micro",
        "reserved_usd_micro",
        "spent_usd_micro",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # manage.py plans create: the creation is a ledger event

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "ref",
        "adapter",
        "mode",
        "status",
        "error_code",
        "cost_usd_micro",
        "created_at",
    )
    list_filter = ("status", "adapter", "mode", "ref")
    search_fields = ("id", "ref")
    readonly_fields = [f.name for f in Execution._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False  # executions are what runs record, never typed in

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(LedgerEvent)
class LedgerEventAdmin(admin.ModelAdmin):
    """Read-only: the ledger is append-only."""

    list_display = ("seq", "kind", "execution_id", "plan_key", "created_at")
    list_filter = ("kind",)

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
