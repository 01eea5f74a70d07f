"""The edge's HTTP side: the web UI, its configuration and health."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ama.room import digest
from edge.node import EdgeNode

STATIC = Path(__file__).parent / "static"

# The UI loads nothing from elsewhere; sockets and API calls go to the edges
# and the core, which the page learns from /v1/config.
CONTENT_SECURITY_POLICY = "default-src 'self'; connect-src 'self' http: https: ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'"


class SecurityHeaders:
    """Adds the content security policy and related headers to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(node: EdgeNode) -> Starlette:
    async def index(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request):
        return JSONResponse({
            "core": node.view.core_url(),
            "ws": node.view.edge_ws_url(node.config),
            "edge": node.name,
            "region": node.current_region(),
        })

    async def healthz(request):
        if node.nc is None or not node.nc.is_connected or not node.accepting:
            return JSONResponse({"status": "unavailable", "service": "edge"}, status_code=503)
        return JSONResponse({"status": "ok", "service": "edge", "edge": node.name, "home_region": node.current_region(), "rooms": len(node.rooms)})

    async def room_digest(request):
        room = node.rooms.get(request.path_params["room"])
        if room is None:
            return JSONResponse({"error": {"code": "unknown_room", "message": "This edge has no replica of that room."}}, status_code=404)
        return JSONResponse(digest(room.room))

    async def locate(request):
        return JSONResponse(node.routing.locate_request(request))

    return Starlette(middleware=[Middleware(SecurityHeaders)], routes=[
        Route("/", index),
        Route("/v1/locate", locate),
        Route("/v1/rooms/{room}/digest", room_digest),
        Route("/v1/config", config),
        Route("/healthz", healthz),
        Mount("/", StaticFiles(directory=STATIC), name="static"),
    ])
