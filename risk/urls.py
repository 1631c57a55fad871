from __future__ import annotations

from django.urls import path

from risk import views

app_name = "risk"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("controls/", views.controls, name="controls"),
    path("killswitch/", views.killswitch, name="killswitch"),
    path("state/", views.trading_state, name="state"),
    path("limits/<int:pk>/", views.limits_edit, name="limits-edit"),
    path("decisions/", views.decisions, name="decisions"),
    path("incidents/", views.incidents, name="incidents"),
    path("incidents/<int:pk>/acknowledge/", views.incident_ack, name="incident-ack"),
    path("incidents/<int:pk>/resolve/", views.incident_resolve_view, name="incident-resolve"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/chain/", views.audit_chain, name="audit-chain"),
]
