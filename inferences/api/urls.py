from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^inferences/?$", views.InferencesView.as_view(), name="inferences"),
    re_path(r"^inferences/(?P<job_id>[^/]+)/start/?$", views.InferenceStartView.as_view(), name="inference-start"),
    re_path(r"^inferences/(?P<job_id>[^/]+)/cancel/?$", views.InferenceCancelView.as_view(), name="inference-cancel"),
    re_path(r"^inferences/(?P<job_id>[^/]+)/?$", views.InferenceView.as_view(), name="inference"),
]
