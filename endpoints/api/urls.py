from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^endpoints/?$", views.EndpointsView.as_view(), name="endpoints"),
]
