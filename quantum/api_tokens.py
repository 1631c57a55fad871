"""Personal API tokens: the settings page (/settings/tokens/) and the password exchange."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from quantum.auth import TokenDenied, api_token_create, api_token_revoke, user_may_hold
from quantum.models import ApiToken
from quantum.roles import mfa_verified, role_required


class TokenForm(forms.Form):
    name = forms.CharField(max_length=64)
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices)


def _page(request: HttpRequest, form: TokenForm, secret: str | None = None) -> HttpResponse:
    user = cast(AbstractBaseUser, request.user)  # role_required: authenticated
    return render(
        request,
        "settings/tokens.html",
        {
            "form": form,
            "secret": secret,
            "tokens": ApiToken.objects.filter(user_id=user.pk),
            "scopes": [s for s in ApiToken.Scope.values if user_may_hold(user, s)],  # type: ignore[arg-type]
            "mfa": mfa_verified(request),
        },
        status=200 if form.is_bound is False or not form.errors else 400,
    )


@role_required("viewer")
def tokens(request: HttpRequest) -> HttpResponse:
    """List (prefix only) and create tokens; a new token's secret is shown on this response."""
    if request.method != "POST":
        return _page(request, TokenForm(initial={"scope": "read"}))
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form)
    try:
        _, secret = api_token_create(
            user=cast(AbstractBaseUser, request.user),  # role_required: authenticated
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            mfa_verified=mfa_verified(request),
        )
    except TokenDenied as exc:
        form.add_error("scope", str(exc))
        return _page(request, form)
    response = _page(request, TokenForm(initial={"scope": "read"}), secret=secret)
    response["Cache-Control"] = "no-store"  # the secret is on this page only
    return response


@require_POST
@role_required("viewer")
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user_id=request.user.pk)
    api_token_revoke(token=token, actor=request.user.get_username())
    messages.success(request, f"Token {token.prefix}… ({token.name}) revoked.")
    return redirect("api-tokens")


class PasswordTokenSerializer(serializers.Serializer):
    username = serializers.CharField(help_text="username or email")
    password = serializers.CharField(style={"input_type": "password"})
    name = serializers.CharField(max_length=64, required=False, default="password exchange")
    scope = serializers.ChoiceField(choices=["read", "trade"], default="read")


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="the secret: shown once, send as `Bearer <token>`")
    prefix = serializers.CharField()
    scope = serializers.CharField()


class PasswordTokenView(APIView):
    """Exchange a username and password for a new personal token (read or trade scope).

    A password alone never gives the operate scope: operator tokens are made on
    /settings/tokens/ in a session that passed multi-factor authentication.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=PasswordTokenSerializer,
        responses={201: IssuedTokenSerializer},
        examples=[
            OpenApiExample(
                "read token",
                value={"username": "carol", "password": "…", "scope": "read"},
                request_only=True,
            ),
            OpenApiExample(
                "issued",
                value={"token": "qt_Zx3…", "prefix": "qt_Zx3kP9aQ", "scope": "read"},
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = PasswordTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            return Response(
                {"non_field_errors": ["unable to log in with these credentials"]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            token, secret = api_token_create(
                user=user, name=data["name"], scope=data["scope"], mfa_verified=False
            )
        except TokenDenied as exc:
            return Response({"scope": [str(exc)]}, status=status.HTTP_403_FORBIDDEN)
        return Response(
            {"token": secret, "prefix": token.prefix, "scope": token.scope},
            status=status.HTTP_201_CREATED,
        )
