from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^checkpoints/?$", views.CheckpointsView.as_view(), name="checkpoints"),
    re_path(r"^checkpoints/(?P<checkpoint_id>[^/]+)/?$", views.CheckpointView.as_view(), name="checkpoint"),
]
