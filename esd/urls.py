"""The admin at /admin/, the ESD API under ESD_API_PREFIX (default `prod/`)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from endpoints.metrics import metrics_view

from .storage_views import LocalStorageObjectView

admin.site.site_header = "ESD server"
admin.site.site_title = "ESD server"
admin.site.index_title = "Administration"
# The job and endpoint lists need the width; the breadcrumbs and the index lead everywhere the sidebar did.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("storage/<str:token>", LocalStorageObjectView.as_view(), name="storage-object"),
    path("metrics", metrics_view, name="metrics"),
    path(settings.ESD_API_PREFIX, include("esd.api_urls")),
]
if settings.ESD_API_PREFIX:
    urlpatterns.append(path("", RedirectView.as_view(url="/admin/", permanent=False)))

handler500 = "esd.views.server_error"
