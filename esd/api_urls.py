"""Every ESD route, mounted under ESD_API_PREFIX by esd/urls.py. The catch-all must stay last."""

from django.urls import include, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .views import PingView, UnknownRouteView

urlpatterns = [
    re_path(r"^ping/?$", PingView.as_view(), name="ping"),
    re_path(r"^openapi\.json$", SpectacularAPIView.as_view(), name="openapi-schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="openapi-docs"),
    re_path(r"", include("accounts.api.urls")),
    re_path(r"", include("checkpoints.api.urls")),
    re_path(r"", include("endpoints.api.urls")),
    re_path(r"", include("inferences.api.urls")),
    re_path(r"^.*$", UnknownRouteView.as_view(), name="unknown-route"),
]
