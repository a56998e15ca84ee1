from django.urls import re_path

from . import views

# ESD clients call paths without a trailing slash; one is tolerated, never redirected to.
urlpatterns = [
    re_path(r"^roles/?$", views.RolesView.as_view(), name="roles"),
    re_path(r"^users/?$", views.UsersView.as_view(), name="users"),
    re_path(r"^auth/token/?$", views.AuthTokenView.as_view(), name="auth-token"),
]
