from __future__ import annotations

from django.urls import path

from models_registry import views

app_name = "models"

urlpatterns = [
    path("", views.model_list, name="list"),
    path("<int:pk>/", views.model_detail, name="detail"),
    path("<int:pk>/promote/", views.model_promote, name="promote"),
    path("<int:pk>/rollback/", views.model_rollback, name="rollback"),
    path("<int:pk>/shadow/", views.model_shadow, name="shadow"),
    path("retrain/", views.model_retrain, name="retrain"),
    path("runs/<int:pk>/", views.training_run, name="run"),
]
