"""WSGI entry point (gunicorn esd.wsgi, or esd_serve)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "esd.settings")

application = get_wsgi_application()
