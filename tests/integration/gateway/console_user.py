"""A console user for the in-process tests: one cookie jar over one gateway app."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A console user: logs in with the form, keeps the session's CSRF token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def login(self, key: str, next_page: str = "/ui") -> httpx.Response:
        form = await self.client.get("/ui/login")
        token = CSRF.search(form.text)
        assert token is not None, form.text
        answer = await self.client.post(
            "/ui/login",
            data={"csrf_token": token.group(1), "api_key": key, "next": next_page},
        )
        if answer.status_code == 303:
            await self.page("/ui/jobs")
        return answer

    async def page(self, path: str) -> httpx.Response:
        answer = await self.client.get(path)
        if (token := CSRF.search(answer.text)) is not None:
            self.csrf = token.group(1)
        return answer

    async def post(self, path: str, **fields: str) -> httpx.Response:
        return await self.client.post(path, data={"csrf_token": self.csrf, **fields})


# A tenant's key with every scope but the operator's (make_api_key's default holds admin).
TENANT_SCOPES = "jobs:read,jobs:write,schedules:write,keys:manage,policies:write"
