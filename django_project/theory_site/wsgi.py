import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault(
    "DJANGO_SETTINGS_MODULE", "pytest_theory.django_project.theory_site.settings.default"
)
application = get_wsgi_application()
